"""CFSD, the content feature structural distance of StyleID (Chung et al., CVPR 2024), as the
authors' evaluation code computes it. No metrics library has it.

Take VGG19 relu3_1 features of an image as one C-vector per position, divided by C. Each
position's dot products with every position, softmax-normalised, form a distribution: how the
image's patches resemble each other. CFSD is the KL divergence from the content image's
distributions to the stylized image's, summed over positions:

    CFSD = sum_i KL(softmax(f_c[i] . f_c) || softmax(f_x[i] . f_x))

Zero when the stylized image keeps the content's structure exactly; unlike LPIPS it does not
mind a change of colour or texture that keeps which patches look alike. Being a sum over
positions, it is comparable only at the same resolution (StyleID evaluates at 512 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ROWS = 2048  # positions per block: at 512 px (16384 positions) a full matrix would be 1 GiB


def positions(features: Tensor) -> Tensor:
    """[1, C, H, W] features -> [H*W, C] vectors divided by C, in float64: near-uniform
    similarities (a random VGG19) must not round to a negative KL."""
    _, channels, height, width = features.shape
    return features[0].reshape(channels, height * width).T.double() / channels


@torch.no_grad()
def cfsd(image_features: Tensor, content_features: Tensor) -> float:
    """CFSD of an image to its content from their VGG19 relu3_1 features ([1, C, H, W] each,
    of ImageNet-normalised images of one size). It takes features, not images, so the
    evaluation runs VGG19 once per image for all its measures, and once per content for all
    the images stylized from it."""
    x, c = positions(image_features), positions(content_features)
    total = 0.0
    for start in range(0, len(c), ROWS):  # the KL sum splits by rows: bounded memory
        log_p_c = torch.log_softmax(c[start : start + ROWS] @ c.T, dim=-1)
        log_p_x = torch.log_softmax(x[start : start + ROWS] @ x.T, dim=-1)
        total += float(F.kl_div(log_p_x, log_p_c, log_target=True, reduction="sum"))
    return total
