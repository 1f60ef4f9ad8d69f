"""A teacher model's shapes before any GPU node exists (an autoscaling cluster may start with
none): the UNet and VAE built on the meta device from their configs alone, no weights, no memory.
"""

from __future__ import annotations

import json
import logging

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from common.errors import first_line
from teacher_workers.model_choice import CONFIG_DIR, PRESETS

log = logging.getLogger(__name__)


def _config(model: str, revision: str | None, part: str, cls: type) -> dict:
    """A component's config: shipped for presets, else read; SD 1.5's if it cannot be read."""
    if model in PRESETS:
        return json.loads((CONFIG_DIR / PRESETS[model] / f"{part}.json").read_text())
    try:
        return dict(cls.load_config(model, subfolder=part, revision=revision))
    except Exception as exc:  # offline Hub id: SD-1.x shapes are all the same
        log.warning(
            "using SD 1.5 shapes for %s of %s (no readable config: %s)",
            part,
            model,
            first_line(exc),
        )
        return json.loads((CONFIG_DIR / "sd15" / f"{part}.json").read_text())


def unet_skeleton(model: str, revision: str | None) -> UNet2DConditionModel:
    """The model's UNet on the meta device: shapes only, no weights, no memory."""
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(
            _config(model, revision, "unet", UNet2DConditionModel)
        )


def teacher_parameters(model: str, revision: str | None = None) -> int:
    """Parameters the teacher runs per image: UNet + VAE (the text encoder runs once, for "").
    `model` is where the configs are read (`model_source.config_source`)."""
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(_config(model, revision, "vae", AutoencoderKL))
    modules = (unet_skeleton(model, revision), vae)
    return sum(p.numel() for module in modules for p in module.parameters())
