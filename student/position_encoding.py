"""DETR sine positional encoding of a feature map, as STTR uses it for both token sets."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionEmbeddingSine(nn.Module):
    """Fixed 2-D sine/cosine encoding: `num_pos_feats` channels for y, then as many for x.

    Coordinates are the 1-based row/column index normalized by the map size and scaled to
    (0, 2*pi], so an encoding means "relative place in the image" whatever the resolution;
    that is what lets the model run at sizes it was not trained at. Like DETR with
    `normalize=True` and no padding mask (our batches are never padded). Built from cumulative
    sums rather than Python sizes so an ONNX export keeps H and W dynamic.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even (sin/cos pairs), got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, x: Tensor) -> Tensor:
        """Encoding for the spatial grid of `x` [B, C, H, W] -> [1, 2 * num_pos_feats, H, W]."""
        eps = 1e-6
        ones = torch.ones_like(x[0, 0], dtype=torch.float32)  # [H, W]
        y = ones.cumsum(0)  # [H, W] row index, 1-based
        xs = ones.cumsum(1)  # [H, W] column index, 1-based
        y = y / (y[-1:, :] + eps) * self.scale
        xs = xs / (xs[:, -1:] + eps) * self.scale
        pos = torch.cat((self._encode(y), self._encode(xs)), dim=-1)  # [H, W, 2F]
        return pos.permute(2, 0, 1).unsqueeze(0).to(x.dtype)  # [1, 2F, H, W]

    def _encode(self, coord: Tensor) -> Tensor:
        """[H, W] coordinates -> [H, W, F]: sin, cos, sin, cos ... of coord / T^(2j/F), where
        j counts the sin/cos pairs (DETR's layout: channels 2j and 2j+1 share a frequency)."""
        pair = torch.arange(0, self.num_pos_feats, 2, dtype=torch.float32, device=coord.device)
        angles = coord[..., None] / self.temperature ** (pair / self.num_pos_feats)  # [H, W, F/2]
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(2)  # [H, W, F]
