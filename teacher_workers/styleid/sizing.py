"""StyleID's work-unit size from a worker's GPU memory: as many contents x styles as the stored
features fit, computed from the UNet's shapes alone (the driver sizes tiles before any GPU node
exists)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from common.planning import tile_shape_for_memory
from teacher_workers.model_source import config_source
from teacher_workers.models import cast, parse_dtype
from teacher_workers.sizing import teacher_parameters, unet_skeleton
from teacher_workers.styleid.engine import CONTENT_KINDS, STYLE_KINDS, feature_bytes

if TYPE_CHECKING:
    from teacher_workers.options import TeacherOptions

FEATURE_SHARE = 0.5  # of the memory left after the weights; the rest is UNet/VAE activations


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
