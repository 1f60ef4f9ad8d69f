"""Full-reference image metrics between two images in [0, 1]: MSE, PSNR and SSIM."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared error of [3, H, W] images in [0, 1]."""
    return float(F.mse_loss(a.float(), b.float()))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for peak 1.0 (inf for identical images)."""
    error = mse(a, b)
    return math.inf if error == 0 else 10.0 * math.log10(1.0 / error)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return (kernel[:, None] * kernel[None, :]).float()  # [size, size]


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01,
    K2=0.03, data range 1), computed per channel over valid windows and averaged."""
    x, y = a.float()[:, None], b.float()[:, None]  # [3, 1, H, W]: channels as a batch
    window = _gaussian_window().to(x.device)[None, None]  # [1, 1, 11, 11]
    if min(x.shape[-2:]) < window.shape[-1]:
        raise ValueError(f"SSIM needs images of at least 11x11, got {tuple(a.shape[-2:])}")
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(score.mean())
