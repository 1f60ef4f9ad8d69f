"""STTR's transformer: an encoder over the style tokens and a decoder whose queries are content.

DETR's post-norm layers with two changes STTR makes: every layer carries its own LayerNorms
and the decoder's queries are the content tokens themselves (not learned object queries), so
each content position asks the encoded style "what should I look like here". Positional
encodings are added to queries and keys only, never to values. Attention goes through
`nn.MultiheadAttention` with `need_weights=False`, which calls PyTorch's fused
`scaled_dot_product_attention` and never materializes the [L, L] weights; that is what lets
4096 content tokens (512px at stride 8) attend to each other.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def attend(attn: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Multi-head attention output [B, Lq, D] through the fused kernel (no weights returned)."""
    return attn(query, key, value, need_weights=False)[0]


def feed_forward(x: Tensor, linear1: nn.Linear, linear2: nn.Linear, dropout: nn.Dropout) -> Tensor:
    """The position-wise ReLU MLP of a transformer layer: [B, L, D] -> [B, L, D]."""
    return linear2(dropout(F.relu(linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention among style tokens, then the MLP; post-norm residuals."""

    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        """src [B, Ls, D], pos [1, Ls, D] -> [B, Ls, D]."""
        qk = src + pos
        src = self.norm1(src + self.dropout(attend(self.self_attn, qk, qk, src)))
        ffn = feed_forward(src, self.linear1, self.linear2, self.dropout)
        return self.norm2(src + self.dropout(ffn))


class DecoderLayer(nn.Module):
    """Self-attention among content tokens, cross-attention to the style memory, the MLP."""

    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor) -> Tensor:
        """tgt [B, Lc, D] content, query_pos [1, Lc, D], memory [B, Ls, D], pos [1, Ls, D]."""
        qk = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout(attend(self.self_attn, qk, qk, tgt)))
        styled = attend(self.cross_attn, tgt + query_pos, memory + pos, memory)  # [B, Lc, D]
        tgt = self.norm2(tgt + self.dropout(styled))
        ffn = feed_forward(tgt, self.linear1, self.linear2, self.dropout)
        return self.norm3(tgt + self.dropout(ffn))


class Transformer(nn.Module):
    """Encode the style tokens, then decode the content tokens against them."""

    def __init__(
        self,
        d_model: int,
        nheads: int,
        enc_layers: int,
        dec_layers: int,
        dim_feedforward: int,
        dropout: float,
    ) -> None:
        super().__init__()
        sizes = (d_model, nheads, dim_feedforward, dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(*sizes) for _ in range(enc_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(*sizes) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        for p in self.parameters():  # DETR's init: Xavier for every matrix
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, content: Tensor, content_pos: Tensor, style: Tensor, style_pos: Tensor
    ) -> Tensor:
        """content [B, Lc, D] (queries), style [B, Ls, D] (memory), pos [1, L, D] -> [B, Lc, D]."""
        return self.decode(content, content_pos, self.encode(style, style_pos), style_pos)

    def encode(self, style: Tensor, style_pos: Tensor) -> Tensor:
        """style [B, Ls, D], style_pos [1, Ls, D] -> the memory [B, Ls, D]: it depends on the
        style alone, so one memory serves every content stylized with that style."""
        for layer in self.encoder_layers:
            style = layer(style, style_pos)
        return style

    def decode(
        self, content: Tensor, content_pos: Tensor, memory: Tensor, style_pos: Tensor
    ) -> Tensor:
        """content [B, Lc, D], content_pos [1, Lc, D], memory [B, Ls, D] -> [B, Lc, D]."""
        for layer in self.decoder_layers:
            content = layer(content, content_pos, memory, style_pos)
        return self.decoder_norm(content)
