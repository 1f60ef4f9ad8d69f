"""DDIM helpers both diffusion teachers share: the checks of their steps and resolution, the
deterministic move between noise levels and per-image seeded noise."""

from __future__ import annotations

import hashlib
import math

import torch

from common.errors import UserError

MAX_STEPS = 999


def check_steps(steps: object) -> None:
    """DDIM steps of either teacher: SD's 1000 training timesteps, offset by 1, so 999 steps
    reach t = 999, the last one."""
    if not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
        raise UserError(f"--steps must be an integer in [2, {MAX_STEPS}], got {steps!r}")


def check_resolution(resolution: int) -> None:
    """The side of either teacher's square: the UNet takes latents whose sides are multiples
    of 8, i.e. images whose sides are multiples of 64 (the engine refuses other shapes)."""
    if resolution < 64 or resolution % 64:
        raise UserError(f"resolution must be a positive multiple of 64, got {resolution}")


def ddim_move(
    x: torch.Tensor, eps: torch.Tensor, alpha_from: float, alpha_to: float
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) move between noise levels: up for inversion, down to sample."""
    x0 = (x - math.sqrt(1.0 - alpha_from) * eps) / math.sqrt(alpha_from)
    return math.sqrt(alpha_to) * x0 + math.sqrt(1.0 - alpha_to) * eps


def image_noise(
    image: torch.Tensor, shape: torch.Size, seed: int, stream: str = ""
) -> torch.Tensor:
    """Noise for one image, seeded by the seed, the image's own pixels and what it is for
    (`stream`): independent between images and uses, yet the same in any batch or tile."""
    seeded = str(seed).encode() + stream.encode() + image.float().cpu().numpy().tobytes()
    digest = hashlib.sha256(seeded).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.randn(shape, generator=generator)
