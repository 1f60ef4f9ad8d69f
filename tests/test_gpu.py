"""Checks that need a CUDA GPU (skipped without one): feature offload and half precision."""

import pytest
import torch

from teacher_workers.config import StyleIDConfig
from teacher_workers.engine import StyleIDEngine
from teacher_workers.models import load_teacher

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def images(n: int, seed: int) -> torch.Tensor:
    low = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(low, size=64, mode="bilinear")


def test_offloaded_features_give_the_same_result():
    teacher = load_teacher("tiny", torch.float32, "cuda")
    config = StyleIDConfig(steps=6, batch_size=2)
    contents, styles = images(3, 0), images(2, 1)
    on_gpu = StyleIDEngine(teacher, config, offload=False).stylize_tile(contents, styles)
    offloaded = StyleIDEngine(teacher, config, offload=True).stylize_tile(contents, styles)
    assert torch.allclose(on_gpu, offloaded, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_close_to_float32(dtype):
    config = StyleIDConfig(steps=6)
    contents, styles = images(1, 0), images(1, 1)
    full = StyleIDEngine(load_teacher("tiny", torch.float32, "cuda"), config)
    half = StyleIDEngine(load_teacher("tiny", dtype, "cuda"), config)
    diff = (full.stylize_tile(contents, styles) - half.stylize_tile(contents, styles)).abs()
    assert diff.mean() < 0.02
