"""Work-unit size from a worker's GPU memory: as many contents x styles as the stored features fit.

The driver sizes tiles before any GPU node exists (an autoscaling cluster may start with none),
so the UNet is built on the meta device from its config alone: shapes, no weights, no memory.
"""

from __future__ import annotations

import json
import logging

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from common.errors import first_line
from common.planning import tile_shape_for_memory
from teacher_workers.model_source import config_source
from teacher_workers.models import CONFIG_DIR, PRESETS, cast, parse_dtype
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.engine import CONTENT_KINDS, STYLE_KINDS, feature_bytes

log = logging.getLogger(__name__)

FEATURE_SHARE = 0.5  # of the memory left after the weights; the rest is UNet/VAE activations


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


def auto_tile(options: TeacherOptions, gpu_memory_gb: float) -> tuple[int, int]:
    """(contents, styles) per tile whose features fit a GPU of `gpu_memory_gb`."""
    dtype = parse_dtype(options.resolved_dtype(torch.device("cuda")))
    source = config_source(options.model, options.model_config)
    unet = cast(unet_skeleton(source, options.revision), None, dtype)
    size = options.styleid.resolution
    q = feature_bytes(unet, options.styleid, CONTENT_KINDS, size, size)
    kv = feature_bytes(unet, options.styleid, STYLE_KINDS, size, size)
    element = torch.finfo(dtype).bits // 8
    weights = teacher_parameters(source, options.revision) * element
    budget = FEATURE_SHARE * max(gpu_memory_gb * 2**30 - weights, 0)
    return tile_shape_for_memory(int(budget), q, kv)
