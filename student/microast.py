"""MicroAST, the micro student: two micro encoders, a modulator and a micro decoder (0.47M
parameters, no VGG at inference).

As in the authors' code ("MicroAST: Towards Super-Fast Ultra-Resolution Arbitrary Style
Transfer", AAAI 2023, MIT licensed): the style image is boiled down to per-channel statistics
of two feature maps (for AdaIN) and per-channel filter weights and biases (from the modulator),
and the content is re-rendered under them. Inputs and output are RGB in [0, 1] (the output is
not clamped). Module and parameter names follow the authors' files, so their released weights
load key for key (`student.microast_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from student.image_space import UNIT, ImageSpace
from student.microast_config import MicroASTConfig
from student.microast_weights import load_authors_weights
from student.model import check_inputs

WIDTH = 64  # channels of the features the decoder reads (the authors' slim_factor 1)
SIZE_MULTIPLE = 4  # two stride-2 convolutions: image sides must be multiples of 4
EPS = 1e-5  # added to the (unbiased) variance in AdaIN, as the authors do


class ConvLayer(nn.Module):
    """Reflection-padded convolution keeping the size (at stride 1): the authors' building
    block, keyed `conv_layer.weight|bias` as in their files."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(
            cin, cout, kernel, stride, padding=kernel // 2, groups=groups, padding_mode="reflect"
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_layer(x)  # [B, cin, H, W] -> [B, cout, H/stride, W/stride]


class SubpixelConvLayer(ConvLayer):
    """A full-resolution `ConvLayer` with few output channels (the decoder's last, 16 -> 3,
    9x9) computed as the same sums in a shape oneDNN runs about twice as fast: the padded input
    is pixel-unshuffled 2x2 (4x the channels at half the size), convolved with the kernel
    rearranged into a ceil(k/2)-wide one per output phase (4x the output channels), and
    pixel-shuffled back. The parameters stay the authors' k x k kernel; H and W must be even."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(cin, cout, kernel)
        self.register_buffer("phase_index", phase_index(cin, cout, kernel), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv_layer
        pad = conv.kernel_size[0] // 2
        x = F.pad(x, [pad] * 4, mode="reflect")  # [B, cin, H + 2p, W + 2p]
        flat = torch.cat([conv.weight.flatten(), conv.weight.new_zeros(1)])  # last: a zero
        weight = flat[self.phase_index]  # [4 cout, 4 cin, q, q]
        y = F.conv2d(F.pixel_unshuffle(x, 2), weight, conv.bias.repeat_interleave(4))
        return F.pixel_shuffle(y, 2)  # [B, cout, H, W]


def phase_index(cin: int, cout: int, kernel: int) -> Tensor:
    """For `SubpixelConvLayer`: which entry of the flattened [cout, cin, k, k] kernel (or the
    zero appended after it) each tap of the rearranged [4 cout, 4 cin, q, q] kernel is. Output
    phase (a, b) at half-resolution (Y, X) reads unshuffled input phase (r, s) at (Y + i, X + j),
    i.e. full-resolution offset (2i + r - a, 2j + s - b) of the original kernel."""
    q = kernel // 2 + 1
    o, a, b, c, r, s, i, j = torch.meshgrid(
        *(torch.arange(n) for n in (cout, 2, 2, cin, 2, 2, q, q)), indexing="ij"
    )
    dy, dx = 2 * i + r - a, 2 * j + s - b
    inside = (dy >= 0) & (dy < kernel) & (dx >= 0) & (dx < kernel)
    index = ((o * cin + c) * kernel + dy.clamp(0, kernel - 1)) * kernel + dx.clamp(0, kernel - 1)
    index = torch.where(inside, index, cout * cin * kernel * kernel)
    return index.reshape(cout * 4, cin * 4, q, q)


class ResidualLayer(nn.Module):
    """Two 3x3 convolutions around a ReLU with a skip; with a style's per-channel `weight` and
    `bias` each convolution's output is modulated ("filter modulation")."""

    def __init__(self, channels: int = WIDTH) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3)

    def forward(
        self, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None
    ) -> Tensor:
        """x [B, C, H, W]; weight, bias [B, C, 1, 1] or both None -> [B, C, H, W]."""
        if weight is None or bias is None:
            return x + self.conv2(torch.relu(self.conv1(x)))
        y = torch.relu(weight * self.conv1(x) + bias * x)  # [B, C, H, W]
        return x + weight * self.conv2(y) + bias * y


class Encoder(nn.Module):
    """Image -> two feature maps at stride 4: `enc1`'s output and one residual layer more.
    The content and the style encoder are two instances of it."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(  # indices as in the authors' files
            ConvLayer(3, 16, 9),
            nn.ReLU(),
            ConvLayer(16, 32, 3, stride=2, groups=16),
            nn.ReLU(),
            ConvLayer(32, 32, 1),
            nn.ReLU(),
            ConvLayer(32, WIDTH, 3, stride=2, groups=32),
            nn.ReLU(),
            ConvLayer(WIDTH, WIDTH, 1),
            nn.ReLU(),
            ResidualLayer(),
        )
        self.enc2 = nn.Sequential(ResidualLayer())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f1 = self.enc1(x)  # [B, 64, H/4, W/4]
        return f1, self.enc2(f1)  # both [B, 64, H/4, W/4]


class Modulator(nn.Module):
    """Style features -> per-channel filter weights and biases: a depthwise 3x3 convolution
    and a global average per output, `weight1`/`bias1` from the first map, `weight2`/`bias2`
    from the second."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("weight1", "bias1", "weight2", "bias2"):
            branch = nn.Sequential(
                ConvLayer(WIDTH, WIDTH, 3, groups=WIDTH), nn.AdaptiveAvgPool2d(1)
            )
            self.add_module(name, branch)

    def forward(
        self, s1: Tensor, s2: Tensor
    ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """s1, s2 [B, 64, h, w] -> weights (w1, w2) and biases (b1, b2), each [B, 64, 1, 1]."""
        return (self.weight1(s1), self.weight2(s2)), (self.bias1(s1), self.bias2(s2))


def mean_std(x: Tensor) -> tuple[Tensor, Tensor]:
    """[B, C, H, W] -> per sample and channel mean and sqrt(unbiased var + 1e-5), [B, C, 1, 1].
    A channels-last map is reduced as the [B, H*W, C] it is in memory (a copy-free view along
    which the reduction vectorizes; over (H, W) of the strided layout it is slower)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=1)
        return mean, (var + EPS).sqrt()
    b, c = x.shape[:2]
    var, mean = torch.var_mean(x.permute(0, 2, 3, 1).reshape(b, -1, c), dim=1, correction=1)
    return mean.view(b, c, 1, 1), (var + EPS).sqrt().view(b, c, 1, 1)


class StyleSignals(NamedTuple):
    """What the decoder reads of a style, per encoder stage (f1, f2): AdaIN's target statistics
    and the modulator's filter weights and biases, each [B, 64, 1, 1]. Computed once per style
    (`MicroAST.encode_style`), it serves any number of contents of any size."""

    mean: tuple[Tensor, Tensor]
    std: tuple[Tensor, Tensor]
    weight: tuple[Tensor, Tensor]
    bias: tuple[Tensor, Tensor]

    @property
    def batch(self) -> int:
        return self.mean[0].shape[0]


class Decoder(nn.Module):
    """Content features re-rendered under a style's signals, then back to pixels (x4)."""

    def __init__(self) -> None:
        super().__init__()
        self.dec1 = ResidualLayer()
        self.dec2 = ResidualLayer()
        up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec3 = nn.Sequential(  # indices as in the authors' files
            up,
            ConvLayer(WIDTH, 32, 3, groups=32),
            nn.ReLU(),
            ConvLayer(32, 32, 1),
            nn.ReLU(),
            up,
            ConvLayer(32, 16, 3, groups=16),
            nn.ReLU(),
            ConvLayer(16, 16, 1),
            nn.ReLU(),
            SubpixelConvLayer(16, 3, 9),
        )

    def forward(self, c2: Tensor, style: StyleSignals, alpha: float) -> Tensor:
        """The content encoder's second map c2 [B, 64, h, w] (the authors' decoder reads only
        that one) -> image [B, 3, 4h, 4w]. The deeper stage's signals (index 1) shape the
        first decoder stage and the shallower ones the second, as the authors cross them."""
        x = self.blend(c2, style.mean[1], style.std[1], alpha)  # [B, 64, h, w]
        x = self.dec1(x, style.weight[1], style.bias[1])
        x = self.blend(x, style.mean[0], style.std[0], alpha)
        x = self.dec2(x, style.weight[0], style.bias[0])
        return self.dec3(x)  # [B, 3, 4h, 4w]

    @staticmethod
    def blend(x: Tensor, mean: Tensor, std: Tensor, alpha: float) -> Tensor:
        """alpha * AdaIN(x -> style statistics) + (1 - alpha) * x."""
        x_mean, x_std = mean_std(x)
        adain = (x - x_mean) / x_std * std + mean
        return adain if alpha == 1 else alpha * adain + (1 - alpha) * x


class MicroAST(nn.Module):
    """(content, style) -> content re-rendered in the style, both RGB in [0, 1]."""

    space: ClassVar[ImageSpace] = UNIT
    size_multiple: ClassVar[int] = SIZE_MULTIPLE
    bf16_auto: ClassVar[bool] = False  # bf16 autocast: 31 dB from fp32 at worst, under 40

    def __init__(self, config: MicroASTConfig) -> None:
        super().__init__()
        self.config = config
        self.content_encoder = Encoder()
        self.style_encoder = Encoder()
        self.modulator = Modulator()
        self.decoder = Decoder()

    def forward(self, content: Tensor, style: Tensor | StyleSignals) -> Tensor:
        """content [B, 3, H, W], style [B, 3, Hs, Ws] or as `encode_style` returned it ->
        [B, 3, H, W]; image sides multiples of 4."""
        if not torch.jit.is_tracing():  # traced exports keep H and W symbolic
            check_inputs(content, style, SIZE_MULTIPLE)
        if isinstance(style, Tensor):
            style = self.encode_style(style)
        _, c2 = self.content_encoder(content)  # [B, 64, H/4, W/4]
        return self.decoder(c2, style, self.config.alpha)  # [B, 3, H, W]

    def encode_style(self, style: Tensor) -> StyleSignals:
        """style [B, 3, Hs, Ws] -> its signals; about half the work at equal sizes, done once
        for many contents."""
        s1, s2 = self.style_encoder(style)  # [B, 64, Hs/4, Ws/4] each
        weight, bias = self.modulator(s1, s2)
        (m1, d1), (m2, d2) = mean_std(s1), mean_std(s2)
        return StyleSignals((m1, m2), (d1, d2), weight, bias)


def build_microast(
    config: MicroASTConfig, init: str, options: Mapping[str, Any] | None = None
) -> MicroAST:
    """A MicroAST; `init` is "scratch" (random), "authors" (the released weights shipped with
    the project) or the path/URL of a folder holding the authors' four files."""
    model = MicroAST(config)
    if init != "scratch":
        load_authors_weights(model, init, options)
    return model
