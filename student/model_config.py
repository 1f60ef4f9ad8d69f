"""STTR's typed config and the strides its image sizes depend on, in a module without torch:
`jobs.train` checks them, and `--help` shows them, before any network is built."""

from __future__ import annotations

from dataclasses import dataclass

SIZE_MULTIPLE = 32  # the style encoder's stride: image sides must be multiples of it
CONTENT_LAYER = 2  # ResNet stage that ends the content encoder (stride 8, 512 channels)
STYLE_LAYER = 4  # ResNet stage that ends the style encoder (stride 32, 2048 channels)


@dataclass(frozen=True)
class STTRConfig:
    """Transformer sizes; the defaults are the authors' released model."""

    d_model: int = 256
    """transformer width"""
    nheads: int = 8
    """attention heads"""
    enc_layers: int = 6
    """transformer encoder layers (the authors' checkpoint needs 6)"""
    dec_layers: int = 6
    """transformer decoder layers (the authors' checkpoint needs 6)"""
    dim_feedforward: int = 2048
    """transformer FFN width"""
    dropout: float = 0.1
    """dropout in the transformer"""

    def __post_init__(self) -> None:
        for name in ("d_model", "nheads", "enc_layers", "dec_layers", "dim_feedforward"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"STTRConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.nheads:
            raise ValueError(
                f"STTRConfig.d_model ({self.d_model}) must be divisible by nheads ({self.nheads})"
            )
        if self.d_model % 4:
            raise ValueError(
                f"STTRConfig.d_model must be a multiple of 4 (sine/cosine pairs for x and y), "
                f"got {self.d_model}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ValueError(f"STTRConfig.dropout must be a number, got {self.dropout!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"STTRConfig.dropout must be in [0, 1), got {self.dropout}")
