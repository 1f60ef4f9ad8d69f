"""STTR, the student: ResNet encoders, a style/content transformer and an upsampling tail.

As in the authors' code ("Fine-Grained Image Style Transfer with Visual Transformers",
ACCV 2022): content tokens at stride 8 ask the encoded style tokens (stride 32) how to look,
and a small convolutional tail turns the answer back into pixels. Inputs and output are in
ImageNet-normalized space (`STTR.space`; see `student.image_space`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from student.authors_checkpoint import load_authors_checkpoint
from student.backbone import ResNetEncoder, load_imagenet_resnet50
from student.image_space import IMAGENET, ImageSpace
from student.model_config import CONTENT_LAYER, SIZE_MULTIPLE, STYLE_LAYER, STTRConfig
from student.position_encoding import PositionEmbeddingSine
from student.transformer import Transformer


class ResBlock(nn.Module):
    """Full pre-activation bottleneck (He et al., 2016) that refines features before upsampling."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm2d(dim),
            nn.LeakyReLU(),
            nn.Conv2d(dim, inner, 1),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(),
            nn.Conv2d(inner, inner, 3, padding=1),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(),
            nn.Conv2d(inner, dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)  # [B, C, H, W]


class UpStage(nn.Module):
    """One octave back towards pixels: ResBlock, x2 bilinear, reflection-padded 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, in_channels // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.res(x)  # [B, C, H, W]
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # [B, C, 2H, 2W]
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))  # [B, C_out, 2H, 2W]


class EncodedStyle(NamedTuple):
    """A style as the student's decoder reads it."""

    memory: Tensor  # [B, Ls, D] style tokens after the transformer's encoder
    pos: Tensor  # [1, Ls, D] their positional encoding

    @property
    def batch(self) -> int:
        return self.memory.shape[0]


def to_tokens(x: Tensor) -> Tensor:
    """[B, C, H, W] feature map -> [B, H*W, C] token sequence (row-major)."""
    return x.flatten(2).transpose(1, 2)


class STTR(nn.Module):
    """Style transfer transformer: (content, style) -> content re-rendered in the style."""

    space: ClassVar[ImageSpace] = IMAGENET
    size_multiple: ClassVar[int] = SIZE_MULTIPLE
    bf16_auto: ClassVar[bool] = True  # bf16 autocast stays within 35 dB of fp32

    def __init__(self, config: STTRConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.content_encoder = ResNetEncoder(CONTENT_LAYER)
        self.style_encoder = ResNetEncoder(STYLE_LAYER)
        self.position = PositionEmbeddingSine(d // 2)
        self.content_proj = nn.Conv2d(self.content_encoder.num_channels, d, 1)
        self.style_proj = nn.Conv2d(self.style_encoder.num_channels, d, 1)
        self.transformer = Transformer(
            d_model=d,
            nheads=config.nheads,
            enc_layers=config.enc_layers,
            dec_layers=config.dec_layers,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
        )
        channels = self.content_encoder.num_channels
        self.output_proj = nn.Conv2d(d, channels, 1)
        self.tail = nn.Sequential(  # 512 -> 256 -> 128 -> 3, undoing the content stride of 8
            UpStage(channels, channels // 2),
            UpStage(channels // 2, channels // 4),
            UpStage(channels // 4, 3),
        )

    def forward(self, content: Tensor, style: Tensor | EncodedStyle) -> Tensor:
        """content [B, 3, H, W], style [B, 3, Hs, Ws] or as `encode_style` returned it ->
        [B, 3, H, W]; image sides multiples of 32."""
        if not torch.jit.is_tracing():  # traced exports keep H and W symbolic
            check_inputs(content, style)
        if isinstance(style, Tensor):
            style = self.encode_style(style)
        c = self.content_encoder(content)  # [B, 512, H/8, W/8]
        out = self.transformer.decode(
            to_tokens(self.content_proj(c)),  # [B, Lc, D] queries
            to_tokens(self.position(c)),  # [1, Lc, D]
            style.memory,  # [B, Ls, D]
            style.pos,  # [1, Ls, D]
        )  # [B, Lc, D]
        out = out.transpose(1, 2).reshape(c.shape[0], -1, c.shape[2], c.shape[3])  # [B, D, h, w]
        return self.tail(self.output_proj(out))  # [B, 3, H, W]

    def encode_style(self, style: Tensor) -> EncodedStyle:
        """style [B, 3, Hs, Ws] -> what the decoder reads of it. A fifth of the work at equal
        sizes (a ResNet-50 and the transformer's encoder), done once for many contents."""
        s = self.style_encoder(style)  # [B, 2048, Hs/32, Ws/32]
        pos = to_tokens(self.position(s))  # [1, Ls, D]
        return EncodedStyle(self.transformer.encode(to_tokens(self.style_proj(s)), pos), pos)


def check_inputs(content: Tensor, style: Tensor | Any, multiple: int = SIZE_MULTIPLE) -> None:
    """ValueError unless content (and a style image) are [B, 3, H, W] with sides multiples of
    `multiple`, and content and style (an image, or a student's encoding of one, which has a
    `batch`) have one batch size B."""
    images = {"content": content, **({"style": style} if isinstance(style, Tensor) else {})}
    for name, x in images.items():
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must be [B, 3, H, W], got {list(x.shape)}")
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"{name} height and width must be multiples of {multiple}, "
                f"got {x.shape[2]}x{x.shape[3]}"
            )
    batch = style.shape[0] if isinstance(style, Tensor) else style.batch
    if content.shape[0] != batch:
        raise ValueError(f"batch sizes differ: content {content.shape[0]}, style {batch}")


def build_sttr(
    config: STTRConfig,
    init: str,
    backbone_weights: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> STTR:
    """A student model; `init` is "imagenet" (ImageNet ResNet-50 weights in both encoders, from
    `backbone_weights` or torchvision, random with a warning when there are none), "scratch"
    (random) or the path/URL of the authors' released checkpoint (`checkpoint0005.pth`)."""
    model = STTR(config)
    if init == "imagenet":
        load_imagenet_resnet50(
            backbone_weights, options, model.content_encoder, model.style_encoder
        )
    elif init != "scratch":
        load_authors_checkpoint(model, init, options)
    return model
