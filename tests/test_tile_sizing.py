"""Tile size from a worker's GPU memory, on SD 1.5's real shapes (meta device: no weights)."""

import pytest
import torch

from teacher_workers.config import StyleIDConfig
from teacher_workers.engine import feature_bytes
from teacher_workers.models import cast
from teacher_workers.options import TeacherOptions
from teacher_workers.sizing import FEATURE_SHARE, auto_tile, unet_skeleton


@pytest.mark.parametrize("gpu_gb", [8, 16, 24, 40])
def test_auto_tile_fits_the_features_in_the_gpu_budget(gpu_gb):
    options = TeacherOptions(model="sd15-random", dtype="float16")
    n_c, n_s = auto_tile(options, gpu_gb)
    unet = cast(unet_skeleton("sd15-random", None), None, torch.float16)
    q = feature_bytes(unet, StyleIDConfig(), ("q",), 512, 512)
    kv = feature_bytes(unet, StyleIDConfig(), ("k", "v"), 512, 512)
    assert n_c * q + n_s * kv <= FEATURE_SHARE * gpu_gb * 2**30
    if (n_c, n_s) != (12, 8):  # below the cap, a tile one bigger each way would not fit
        assert (n_c + 1) * q + (n_s + 1) * kv > FEATURE_SHARE * (gpu_gb * 2**30 - 1.8e9)


def test_more_memory_gives_bigger_tiles_up_to_the_recipe_combination():
    options = TeacherOptions(model="sd15-random", dtype="float16")
    sizes = [auto_tile(options, gb) for gb in (8, 16, 24, 80)]
    pairs = [c * s for c, s in sizes]
    assert pairs == sorted(pairs) and pairs[0] < pairs[-1]
    assert sizes[-1] == (12, 8)
    assert auto_tile(TeacherOptions(model="tiny", dtype="float16"), 8) == (12, 8)


def test_smaller_images_fit_more_pairs():
    big = auto_tile(TeacherOptions(model="sd15-random", dtype="float16"), 16)
    small = auto_tile(
        TeacherOptions(model="sd15-random", dtype="float16", styleid=StyleIDConfig(resolution=256)),
        16,
    )
    assert small[0] * small[1] > big[0] * big[1]
