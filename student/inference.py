"""Run a student on images in [0, 1]: its pixel space, size handling and precision.

Every student names its pixel space (`student.image_space`) and the multiple its image sides
must be; these functions convert and pad through them, so STTR and MicroAST are used alike.
The student runs channels-last (oneDNN's native convolution layout). bfloat16 autocast stays
within 35 dB PSNR of fp32 on the golden set (`benchmarks.student_speed`), but whether it is
faster depends on the processor: GPUs and CPUs with bf16 instructions (AVX512-BF16, AMX) gain,
while an AVX2-only CPU emulates bf16 and runs matmuls and convolutions several times slower
than fp32. "auto" therefore times one transformer-sized matmul both ways on the device at hand
and takes the faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from student.choices import PRECISIONS

# imagenet_* stay importable from here, where the evaluation and tests have always found them
from student.image_space import imagenet_denormalize, imagenet_normalize  # noqa: F401
from student.model import SIZE_MULTIPLE

BF16_MARGIN = 1.2  # "auto" takes bf16 only when clearly faster: timing has noise


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


def pad_content(content: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """[B, 3, H, W] padded at the bottom and right to multiples of `multiple`, mirroring the
    border (edge replication for images too small to mirror)."""
    h, w = content.shape[-2:]
    pad_h, pad_w = round_up(h, multiple) - h, round_up(w, multiple) - w
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(content, (0, pad_w, 0, pad_h), mode=mode)


def resize_style(style: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """[B, 3, H, W] resized (antialiased bilinear) so each side is the nearest multiple of
    `multiple`."""
    h, w = style.shape[-2:]
    size = [max(multiple, round(side / multiple) * multiple) for side in (h, w)]
    if size == [h, w]:
        return style
    return F.interpolate(style, size=size, mode="bilinear", align_corners=False, antialias=True)


def matmul_seconds(device: torch.device, dtype: torch.dtype) -> float:
    """Best of three: one [256, 256] x [256, 1024] matmul (256 tokens through an STTR
    feed-forward layer's first half) in process CPU time, which a busy machine disturbs less
    than wall time; small, so an emulated bf16 costs a fraction of a second to find out."""
    a = torch.randn(256, 256, device=device, dtype=dtype)
    b = torch.randn(256, 1024, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):  # the first call is a warm-up
        start = time.process_time()
        a @ b
        best = min(best, time.process_time() - start)
    return best


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> "bf16" on CUDA, or on a CPU where a bf16 matmul is clearly faster than fp32;
    otherwise "fp32". Other values are returned as they are."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    if device.type != "cpu":
        return "fp32"
    fp32, bf16 = (matmul_seconds(device, dtype) for dtype in (torch.float32, torch.bfloat16))
    return "bf16" if bf16 * BF16_MARGIN < fp32 else "fp32"


def resolve_for(model: nn.Module, precision: str) -> str:
    """`resolve_precision` for `model` on its device; "auto" stays "fp32" for a student whose
    bf16 output is too far from fp32 (`bf16_auto` False: MicroAST, 31 dB worst on the golden
    set at 512 px, against the 40 dB its fast paths must keep)."""
    if precision == "auto" and not model.bf16_auto:
        return "fp32"
    return resolve_precision(precision, next(model.parameters()).device)


def for_inference(model: nn.Module) -> nn.Module:
    """`model` in eval mode with channels-last weights, the layout `stylize` feeds it."""
    return model.eval().to(memory_format=torch.channels_last)


@contextmanager
def running(model: nn.Module, precision: str) -> Iterator[Tensor]:
    """Eval mode, no autograd and, for "bf16", bfloat16 autocast (matmuls and convolutions in
    bf16, normalizations and softmax in fp32); yields a parameter, whose device and dtype the
    inputs take."""
    param = next(model.parameters())
    autocast = torch.autocast(param.device.type, torch.bfloat16, enabled=precision == "bf16")
    with eval_mode(model), torch.no_grad(), autocast:
        yield param


def prepared(
    model: nn.Module, image: Tensor, like: Tensor, fit: Callable[[Tensor, int], Tensor]
) -> Tensor:
    """[3, H, W] in [0, 1] -> [1, 3, H', W'] in `model`'s space, sized by `fit` to its size
    multiple, channels-last, on the device and in the dtype of `like`."""
    x = fit(model.space.normalize(image.to(like.device, like.dtype))[None], model.size_multiple)
    return x.contiguous(memory_format=torch.channels_last)


def encode_style(model: nn.Module, style: Tensor, precision: str = "fp32") -> Any:
    """A style [3, H, W] in [0, 1] encoded once for `stylize` (the student's `encode_style`):
    resized to the student's size multiple (only its statistics or tokens matter to the model,
    not its layout). `precision` as for `stylize`."""
    with running(model, resolve_for(model, precision)) as param:
        return model.encode_style(prepared(model, style, param, resize_style))


def stylize(model: nn.Module, content: Tensor, style: Any, precision: str = "fp32") -> Tensor:
    """Content [3, H, W] re-rendered in the style of [3, H', W'] (both in [0, 1]) -> [3, H, W].

    Any sizes work. The content is mirror-padded to the student's size multiple (32 for STTR,
    4 for MicroAST) and the output cropped back, so every output pixel lines up with its input
    pixel (resizing would blur it). A style from `encode_style` skips the style side of the
    work (a fifth of STTR's, about half of MicroAST's): encode it once for many contents.
    `precision` "bf16" runs the model under bfloat16 autocast; "fp32" is the reference;
    "auto" picks the faster of the two (`resolve_precision`: resolve it once when stylizing
    many images).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    precision = resolve_for(model, precision)
    if isinstance(style, Tensor):
        style = encode_style(model, style, precision)
    return stylize_batch(model, [content], [style], precision)[0]


def stylize_batch(
    model: nn.Module, contents: list[Tensor], styles: list[Any], precision: str = "fp32"
) -> list[Tensor]:
    """`stylize` for several contents of one size [3, H, W], each with its style from
    `encode_style` (styles whose encodings have one shape: `style_shape`), in one model call:
    what a server does with requests that arrive together."""
    precision = resolve_for(model, precision)
    h, w = contents[0].shape[-2:]
    with running(model, precision) as param:
        batch = [prepared(model, content, param, pad_content) for content in contents]
        x = batch[0] if len(batch) == 1 else torch.cat(batch)  # [B, 3, H', W']
        out = model(x, join_styles(styles))[:, :, :h, :w]  # [B, 3, H, W]
    return list(model.space.denormalize(out.float()).clamp(0, 1).to(contents[0].device))


def style_shape(style: Any) -> tuple:
    """The shapes of an encoded style's tensors: encodings of one shape join into a batch."""
    if isinstance(style, Tensor):
        return tuple(style.shape)
    return tuple(style_shape(part) for part in style)


def join_styles(styles: list[Any]) -> Any:
    """Encoded styles of one shape (tensors, batch first, in named tuples or tuples) joined
    along the batch: [1, ...] each -> [B, ...]."""
    first = styles[0]
    if len(styles) == 1:
        return first
    if isinstance(first, Tensor):
        return torch.cat(styles)
    parts = [join_styles(list(group)) for group in zip(*styles, strict=True)]
    return type(first)(*parts) if hasattr(first, "_fields") else type(first)(parts)
