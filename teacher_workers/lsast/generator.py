"""LSAST's prompt generator: one frozen token embedding in, 30 learned token embeddings out.

The authors' `EmbeddingManager.attention` is a transformer block (self-attention, cross-attention
to its own input, gated feed-forward with no residual) whose last Linear widens to 30 x D; its
input, the token embedding of `a`, is fixed, so the prompts are a function of the block's
weights alone. The state-dict key names are the authors', so their weights convert one to one.
Any other `PromptGenerator` (the reproduction's unpublished replacement, say) can be plugged in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ImageError, first_line

if TYPE_CHECKING:
    from teacher_workers.models import TeacherModel


class PromptFileError(ImageError):
    """A learned-style prompt file that cannot be used: in a generation run it is recorded and
    skipped like a corrupt style image, elsewhere it is one error line."""


N_PROMPTS = 30  # num_vectors_per_token (10) x 3 in the authors' EmbeddingManager
HEADS, HEAD_DIM, DROPOUT = 8, 64, 0.1
STYLES_KEY = "styles"  # header metadata: the style images a generator was learned from


@runtime_checkable
class PromptGenerator(Protocol):
    """What LSAST needs of a generator: `n_prompts` token embeddings of width `dim`."""

    n_prompts: int
    dim: int

    def __call__(self) -> torch.Tensor:  # [n_prompts, dim]
        ...


class CrossAttention(nn.Module):
    """LDM's CrossAttention: bias-free q/k/v, softmax(q k^T / sqrt(d_head)) v, Linear + Dropout."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.scale = heads, head_dim**-0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        weights = (q @ k.transpose(-1, -2) * self.scale).softmax(-1)
        return self.to_out((weights @ v).transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    """proj -> (a, gate) -> a * gelu(gate), exact GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, dim_out: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            GEGLU(dim, 4 * dim), nn.Dropout(dropout), nn.Linear(4 * dim, dim_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """The authors' `embedding_manager.TransformerBlock`: the feed-forward has no residual, so
    its output can be `dim_out` wide (30 prompts of `dim` each)."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float, dim_out: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, head_dim, dropout)
        self.attn2 = CrossAttention(dim, heads, head_dim, dropout)
        self.ff = FeedForward(dim, dim_out, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x))


class LSASTPromptGenerator(nn.Module):
    """P* = TransformerBlock(init, context=init)[-1].view(30, D), init the frozen `a` embedding.

    `initial_embeddings` is a buffer: saved with the weights, never trained (CODE; the paper
    calls it a learnable matrix)."""

    def __init__(
        self,
        initial_embedding: torch.Tensor,
        n_prompts: int = N_PROMPTS,
        heads: int = HEADS,
        head_dim: int = HEAD_DIM,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        self.n_prompts, self.dim = n_prompts, initial_embedding.shape[-1]
        self.register_buffer("initial_embeddings", initial_embedding.detach().reshape(1, self.dim))
        self.attention = TransformerBlock(self.dim, heads, head_dim, dropout, n_prompts * self.dim)

    def forward(self) -> torch.Tensor:
        init = self.initial_embeddings.view(1, 1, self.dim)
        return self.attention(init, context=init)[-1].view(self.n_prompts, self.dim)


def new_generator(teacher: TeacherModel, seed: int = 0) -> LSASTPromptGenerator:
    """A freshly initialised generator for this teacher's text encoder: its width, and the
    embedding of `a` at the id its own tokenizer gives (`PromptTokens.init_id`)."""
    if teacher.text_encoder is None or teacher.prompt_tokens is None:
        raise ValueError("a prompt generator needs the teacher's text encoder")
    table = teacher.text_encoder.get_input_embeddings().weight
    torch.manual_seed(seed)
    generator = LSASTPromptGenerator(table[teacher.prompt_tokens.init_id].detach().float())
    return generator.to(device=table.device, dtype=table.dtype)


def generator_bytes(generator: LSASTPromptGenerator, styles: Sequence[str] = ()) -> bytes:
    """The generator's weights as safetensors bytes (no pickle), under the authors' key names,
    with the URLs of the style images it was learned from in the header (`STYLES_KEY`, a JSON
    list): the student distilled from its targets takes one of them as its style input."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    metadata = {"format": "lsast-prompt-generator"}
    if styles:
        metadata[STYLES_KEY] = json.dumps(list(styles))
    return save(state, metadata=metadata)


def generator_from_bytes(data: bytes, what: str) -> LSASTPromptGenerator:
    """A generator from `generator_bytes` output; anything else is a `PromptFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise PromptFileError(
            f"{what} is not a safetensors prompt file ({first_line(exc)})"
        ) from None
    return generator_from_state(state, what)


def generator_from_state(state: dict[str, torch.Tensor], what: str) -> LSASTPromptGenerator:
    """A generator holding `state` (our key names); a wrong key set or wrong shapes are a
    `PromptFileError`. Widths come from the tensors' shapes, so a 768-wide SD generator and a
    tiny test one load the same way."""
    try:
        init = state["initial_embeddings"]
        dim = init.shape[-1]
        generator = LSASTPromptGenerator(
            init,
            n_prompts=state["attention.ff.net.2.weight"].shape[0] // dim,
            head_dim=state["attention.attn1.to_q.weight"].shape[0] // HEADS,
        )
        expected = generator.state_dict()
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(f"missing {missing[:3]}, unexpected {extra[:3]}")
        wrong = [
            f"{k} {[*state[k].shape]}" for k, v in expected.items() if state[k].shape != v.shape
        ]
        if wrong:
            raise ValueError(f"wrong shapes for a {dim}-wide generator: {', '.join(wrong[:3])}")
        generator.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise PromptFileError(
            f"{what} does not hold LSAST prompt-generator weights ({first_line(exc)})"
        ) from None
    return generator.to(init.dtype)
