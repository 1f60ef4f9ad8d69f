"""Layer-aware contexts: the UNet's (and ControlNet's) cross-attention layers take their context
from their layer group, encoder (`down_blocks`), middle (`mid_block`) or decoder (`up_blocks`),
as the authors' UNet takes `context[0]`, `[1]`, `[2]` in its input, middle and output blocks.

Every `attn2` gets a `GroupedCrossAttnProcessor` reading one shared `ContextStore`, which the
caller fills before a UNet/ControlNet call (`contexts(...)`) and clears after; with the store
empty the processors are diffusers' own, so an installed model still runs plainly. `grouped`
installs them for a while only, so a model shared by several engines (or by StyleID) is left
as it was found.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

GROUPS = ("down_blocks.", "mid_block.", "up_blocks.")  # group 0, 1, 2 by name prefix

Contexts = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (down, mid, up), each [B, L, D]


@dataclass
class ContextStore:
    """The contexts the next model call's cross-attention layers use (None: the passed one)."""

    contexts: Contexts | None = None


class GroupedCrossAttnProcessor(AttnProcessor2_0):
    """Diffusers' cross-attention with the context of this layer's group, when one is set."""

    def __init__(self, group: int, store: ContextStore) -> None:
        super().__init__()
        self.group = group
        self.store = store

    @torch.compiler.disable  # per-stage contexts: a compiled UNet calls it eagerly
    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if self.store.contexts is not None:
            encoder_hidden_states = self.store.contexts[self.group]
        return super().__call__(
            attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
        )


def layer_group(name: str) -> int:
    """0, 1 or 2 for a cross-attention layer of the encoder, middle or decoder blocks."""
    for group, prefix in enumerate(GROUPS):
        if name.startswith(prefix):
            return group
    raise ValueError(f"{name} is in none of the layer groups {GROUPS}")


def install_grouped(model: nn.Module, store: ContextStore) -> list[int]:
    """Give every cross-attention (`attn2`) layer of a UNet or ControlNet its group's processor
    on `store`; other layers keep theirs. Returns how many layers each group has."""
    processors = dict(model.attn_processors)
    counts = [0, 0, 0]
    for name in processors:
        if ".attn2." in name:
            group = layer_group(name)
            processors[name] = GroupedCrossAttnProcessor(group, store)
            counts[group] += 1
    model.set_attn_processor(processors)
    return counts


@contextmanager
def contexts(store: ContextStore, values: Contexts) -> Iterator[None]:
    """The store holds `values` for the calls inside, and is empty again afterwards."""
    store.contexts = values
    try:
        yield
    finally:
        store.contexts = None


@contextmanager
def grouped(model: nn.Module, store: ContextStore) -> Iterator[list[int]]:
    """`install_grouped` for the duration; the model's own processors come back afterwards."""
    original = model.attn_processors
    try:
        yield install_grouped(model, store)
    finally:
        model.set_attn_processor(original)
