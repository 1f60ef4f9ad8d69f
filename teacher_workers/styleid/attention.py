"""StyleID's capture and injection of self-attention features, as diffusers attention processors.

One `StyleIDAttnProcessor` is installed on each injected `attn1`; all of them share one
`AttentionController` that says what to do on the current UNet call:
- OFF: plain self-attention (the UNet is unchanged);
- CAPTURE: plain self-attention, and the projected Q, K, V of the batch are recorded per timestep;
- INJECT: StyleID attention for a batch of pairs (the paper's query preservation + K/V swap):
  Q~ = gamma * Q_c(t) + (1 - gamma) * Q_cs,  K = K_s(t),  V = V_s(t),
  out = softmax(T * Q~ K^T / sqrt(d)) V, followed by the layer's own output projection.
Features are stored as projected, pre-head-split tensors [B, N, C].
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

Features = dict[
    int, dict[str, dict[str, torch.Tensor]]
]  # timestep -> layer -> "q"|"k"|"v" -> [B, N, C]


class Mode(enum.Enum):
    OFF = "off"
    CAPTURE = "capture"
    INJECT = "inject"


@dataclass
class Injection:
    """What the injected layers use at one sampling step, already gathered per pair."""

    queries: dict[str, torch.Tensor]  # layer -> Q_c(t) [P, N, C]
    keys: dict[str, torch.Tensor]  # layer -> K_s(t) [P, N, C]
    values: dict[str, torch.Tensor]  # layer -> V_s(t) [P, N, C]


@dataclass
class AttentionController:
    """Shared state of all StyleID processors for the UNet call about to run."""

    gamma: float
    temperature: float
    mode: Mode = Mode.OFF
    timestep: int = -1
    capture_kinds: tuple[str, ...] = ()
    capture_steps: frozenset[int] = frozenset()
    store_device: torch.device | None = None
    captured: Features = field(default_factory=dict)
    injection: Injection | None = None

    def record(self, layer: str, projections: dict[str, torch.Tensor]) -> None:
        """Keep the requested projections of this call if its timestep is one sampling will use."""
        if self.timestep not in self.capture_steps:
            return
        slot = self.captured.setdefault(self.timestep, {}).setdefault(layer, {})
        for kind in self.capture_kinds:
            slot[kind] = _store(projections[kind], self.store_device)


def _store(tensor: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """Detach a feature, moving it to pinned CPU memory when features are offloaded."""
    tensor = tensor.detach()
    if device is None or device == tensor.device:
        return tensor
    moved = tensor.to(device)
    return moved.pin_memory() if torch.cuda.is_available() and device.type == "cpu" else moved


class StyleIDAttnProcessor:
    """Self-attention of one injected layer, steered by the shared controller."""

    def __init__(self, layer: str, controller: AttentionController) -> None:
        self.layer = layer
        self.controller = controller

    @torch.compiler.disable  # per-step Python state: a compiled UNet calls it eagerly
    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{self.layer}: StyleID injects self-attention (attn1) only")
        ctl = self.controller
        query = attn.to_q(hidden_states)  # [B, N, C]
        scale = attn.scale
        if ctl.mode is Mode.INJECT:
            injected = ctl.injection
            query = ctl.gamma * injected.queries[self.layer] + (1.0 - ctl.gamma) * query
            key, value = injected.keys[self.layer], injected.values[self.layer]
            scale = attn.scale * ctl.temperature
        else:
            key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)
            if ctl.mode is Mode.CAPTURE:
                ctl.record(self.layer, {"q": query, "k": key, "v": value})
        out = F.scaled_dot_product_attention(
            _heads(query, attn.heads),
            _heads(key, attn.heads),
            _heads(value, attn.heads),
            scale=scale,
        )
        out = out.transpose(1, 2).flatten(2)  # [B, heads, N, d] -> [B, N, C]
        return attn.to_out[1](attn.to_out[0](out))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, C] -> [B, heads, N, C / heads] (inputs may be expanded views, so no in-place ops)."""
    batch, tokens, channels = x.shape
    return x.reshape(batch, tokens, heads, channels // heads).transpose(1, 2)


def check_plain_self_attention(layer: str, attn: Attention) -> None:
    """Refuse layers whose processor would need features this processor does not implement."""
    unsupported = [
        name
        for name in ("spatial_norm", "group_norm", "norm_q", "norm_k")
        if getattr(attn, name, None) is not None
    ]
    if attn.is_cross_attention or attn.residual_connection or attn.rescale_output_factor != 1.0:
        unsupported.append("cross-attention/residual/rescale")
    if unsupported:
        raise ValueError(f"{layer} is not a plain self-attention layer ({', '.join(unsupported)})")
