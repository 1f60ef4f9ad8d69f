"""LSAST's structure control: a canny ControlNet and the edge hint it reads.

The hint is OpenCV's Canny on the 3-channel 8-bit image (OpenCV takes the largest gradient over
the channels, as the authors' code and controlnet_aux do; no grayscale first), stacked to 3
channels in {0, 1}. The ControlNet is a Hub id or folder (`lllyasviel/control_v11p_sd15_canny`),
or `tiny`: `ControlNetModel.from_unet` of the teacher's UNet, for tests without weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from common.errors import UserError, first_line
from teacher_workers.lsast.config import TINY_CONTROLNET, check_controlnet_name
from teacher_workers.model_source import hub_hint
from teacher_workers.models import cast

TINY_HINT_CHANNELS = (8, 16, 16, 16)


def canny_hint(images: torch.Tensor, low: int = 100, high: int = 200) -> torch.Tensor:
    """Images [B, 3, H, W] in [0, 1] -> canny edge maps [B, 3, H, W] in {0, 1} (float32)."""
    import cv2

    pixels = images.detach().float().clamp(0, 1).mul(255).round().byte()
    edges = [
        cv2.Canny(np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy()), low, high)
        for image in pixels
    ]
    hint = torch.from_numpy(np.stack(edges)).float() / 255.0
    return hint[:, None].expand(-1, 3, -1, -1).contiguous()


def load_controlnet(
    name: str,
    unet: UNet2DConditionModel,
    dtype: torch.dtype,
    device: torch.device | str,
    revision: str | None = None,
) -> ControlNetModel:
    """The frozen ControlNet `name`, in eval mode on `device` (`tiny` is built from `unet`)."""
    check_controlnet_name(name)
    if name == TINY_CONTROLNET:
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=TINY_HINT_CHANNELS
        )
    else:
        where = f"ControlNet folder {name}" if Path(name).is_dir() else f"ControlNet {name!r}"
        try:
            controlnet = ControlNetModel.from_pretrained(name, revision=revision, torch_dtype=dtype)
        except Exception as exc:  # Hub, network and file errors all mean "cannot load this"
            hint = "" if Path(name).is_dir() else f" ({hub_hint()})"
            raise UserError(f"cannot load {where}{hint}: {first_line(exc)}") from None
    return cast(controlnet, torch.device(device), dtype).eval().requires_grad_(False)
