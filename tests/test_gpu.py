"""Feature offload and half precision: GPU cases are skipped without CUDA; the bf16 comparison
also runs on the CPU, so every machine checks it."""

import pytest
import torch

from teacher_workers.models import load_teacher
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.engine import StyleIDEngine

NEEDS_GPU = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def images(n: int, seed: int) -> torch.Tensor:
    low = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(low, size=64, mode="bilinear")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_offloaded_features_give_the_same_result():
    teacher = load_teacher("tiny", torch.float32, "cuda")
    config = StyleIDConfig(steps=6, batch_size=2)
    contents, styles = images(3, 0), images(2, 1)
    on_gpu = StyleIDEngine(teacher, config, offload=False).stylize_tile(contents, styles)
    offloaded = StyleIDEngine(teacher, config, offload=True).stylize_tile(contents, styles)
    assert torch.allclose(on_gpu, offloaded, atol=1e-6)


# Mean absolute difference from float32 on [0, 1] images (tiny random teacher, 64 px, 6 steps).
# The procedure amplifies rounding ~100x (SPEC section 3): bfloat16's unit roundoff is 2^-9,
# float16's 2^-12. On the CPU bfloat16 measures ~0.03 (16% relative on the final latents),
# about what changing the style does to this random model, so the bound catches gross
# breakage (dtype mismatches, NaN/inf, garbage), not subtle precision loss.
TOLERANCE = {torch.float16: 0.02, torch.bfloat16: 0.06}


@pytest.mark.parametrize(
    ("device", "dtype"),
    [
        pytest.param("cpu", torch.bfloat16, id="cpu-bfloat16"),
        pytest.param("cuda", torch.bfloat16, id="cuda-bfloat16", marks=NEEDS_GPU),
        pytest.param("cuda", torch.float16, id="cuda-float16", marks=NEEDS_GPU),
    ],
)
def test_half_precision_stays_close_to_float32(device: str, dtype: torch.dtype) -> None:
    """The whole procedure (encode, inversion, injection, sampling, decode) in half precision
    stays close to float32 on the same weights: protects against a cast that breaks on half
    precision only (fp16 runs on GPUs only; bf16 also on the CPU, so every machine checks it)."""
    config = StyleIDConfig(steps=6)
    contents, styles = images(1, 0), images(1, 1)
    full = StyleIDEngine(load_teacher("tiny", torch.float32, device), config)
    half = StyleIDEngine(load_teacher("tiny", dtype, device), config)
    diff = (full.stylize_tile(contents, styles) - half.stylize_tile(contents, styles)).abs()
    assert torch.isfinite(diff).all()
    assert diff.mean() < TOLERANCE[dtype]
