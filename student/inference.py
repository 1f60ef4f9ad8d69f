"""Run the student on images in [0, 1]: ImageNet normalization and size handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from student.model import SIZE_MULTIPLE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """ImageNet mean and std shaped [3, 1, 1] on `x`'s device and dtype."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return mean, std


def imagenet_normalize(x: Tensor) -> Tensor:
    """[..., 3, H, W] in [0, 1] -> the ImageNet-normalized space the student works in."""
    mean, std = _stats(x)
    return (x - mean) / std


def imagenet_denormalize(x: Tensor) -> Tensor:
    """Inverse of `imagenet_normalize` (no clamping)."""
    mean, std = _stats(x)
    return x * std + mean


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode (no dropout, BatchNorm running stats), then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def round_up(n: int, multiple: int = SIZE_MULTIPLE) -> int:
    """Smallest multiple of `multiple` that is >= n."""
    return -(-n // multiple) * multiple


def pad_content(content: Tensor) -> Tensor:
    """[B, 3, H, W] padded at the bottom and right to multiples of 32, mirroring the border
    (edge replication for images too small to mirror)."""
    h, w = content.shape[-2:]
    pad_h, pad_w = round_up(h) - h, round_up(w) - w
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(content, (0, pad_w, 0, pad_h), mode=mode)


def resize_style(style: Tensor) -> Tensor:
    """[B, 3, H, W] resized (antialiased bilinear) so each side is the nearest multiple of 32."""
    h, w = style.shape[-2:]
    size = [max(SIZE_MULTIPLE, round(side / SIZE_MULTIPLE) * SIZE_MULTIPLE) for side in (h, w)]
    if size == [h, w]:
        return style
    return F.interpolate(style, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def stylize(model: nn.Module, content: Tensor, style: Tensor) -> Tensor:
    """Content [3, H, W] re-rendered in the style of [3, H', W'] (both in [0, 1]) -> [3, H, W].

    Any sizes work. The content is mirror-padded to multiples of 32 and the output cropped
    back, so every output pixel lines up with its input pixel (resizing would blur it); the
    style is resized instead, because only its tokens matter to the model, not its layout.
    """
    param = next(model.parameters())
    h, w = content.shape[-2:]
    c = pad_content(imagenet_normalize(content.to(param.device, param.dtype))[None])  # [1,3,Hp,Wp]
    s = resize_style(imagenet_normalize(style.to(param.device, param.dtype))[None])  # [1,3,Hs,Ws]
    with eval_mode(model):
        out = model(c, s)[0, :, :h, :w]  # [3, H, W]
    return imagenet_denormalize(out.float()).clamp(0, 1).to(content.device)
