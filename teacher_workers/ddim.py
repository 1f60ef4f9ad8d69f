"""DDIM helpers both diffusion teachers share (their flags' checks are in `teacher_workers.limits`):
the deterministic move between noise levels and per-image seeded noise."""

from __future__ import annotations

import hashlib
import math

import torch


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
