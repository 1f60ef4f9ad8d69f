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
from torch import Tensor, nn

from student.inference import imagenet_normalize

RELU3_1 = 12  # torchvision vgg19().features[0:12] ends with relu3_1 (StyleID's layer "11")
ROWS = 2048  # positions per block: at 512 px (16384 positions) a full matrix would be 1 GiB


def positions(features: Tensor) -> Tensor:
    """[1, C, H, W] features -> [H*W, C] vectors divided by C, in float64: near-uniform
    similarities (a random VGG19) must not round to a negative KL."""
    _, channels, height, width = features.shape
    return features[0].reshape(channels, height * width).T.double() / channels


@torch.no_grad()
def cfsd(relu3_1: nn.Module, image: Tensor, content: Tensor) -> float:
    """CFSD of `image` to `content`, both [3, H, W] in [0, 1] of the same size; `relu3_1` is
    VGG19 features[0:RELU3_1], which takes ImageNet-normalised input."""
    x, c = (positions(relu3_1(imagenet_normalize(t)[None])) for t in (image, content))
    total = 0.0
    for start in range(0, len(c), ROWS):  # the KL sum splits by rows: bounded memory
        log_p_c = torch.log_softmax(c[start : start + ROWS] @ c.T, dim=-1)
        log_p_x = torch.log_softmax(x[start : start + ROWS] @ x.T, dim=-1)
        total += float(F.kl_div(log_p_x, log_p_c, log_target=True, reduction="sum"))
    return total
