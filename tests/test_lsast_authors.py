"""The LSAST authors' prompt files (`embeddings_gs-*.pt`): pickled `ldm` modules, imported
without their classes and without running anything a file names.

The modules below are the authors' layout written out from LSAST.md (their `ldm` class paths
and attribute names, LDM's einsum attention), not derived from our generator."""

from __future__ import annotations

import io
import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from common.errors import UserError
from jobs import import_style
from teacher_workers.lsast.authors import authors_generator
from teacher_workers.lsast.styles import learned_from, read_prompts

DIM, HEADS, HEAD_DIM, N_PROMPTS = 32, 8, 64, 30


class GEGLU(nn.Module):
    __module__ = "ldm.modules.attention"

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    __module__ = "ldm.modules.attention"

    def __init__(self, dim: int, dim_out: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttention(nn.Module):
    __module__ = "ldm.modules.attention"

    def __init__(self, query_dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        inner = heads * dim_head
        self.scale, self.heads = dim_head**-0.5, heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(query_dim, inner, bias=False)
        self.to_v = nn.Linear(query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, h = x.shape[0], self.heads
        q, k, v = (
            t.reshape(b, t.shape[1], h, -1).permute(0, 2, 1, 3).reshape(b * h, t.shape[1], -1)
            for t in (self.to_q(x), self.to_k(context), self.to_v(context))
        )
        attn = (torch.einsum("bid,bjd->bij", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("bij,bjd->bid", attn, v)
        return self.to_out(out.reshape(b, h, -1, out.shape[-1]).permute(0, 2, 1, 3).flatten(2))


class TransformerBlock(nn.Module):
    """`ldm/modules/embedding_manager.py:TransformerBlock` (gated_ff, no FF residual)."""

    __module__ = "ldm.modules.embedding_manager"

    def __init__(self, dim: int, n_heads: int, d_head: int, dropout: float, dim_out: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, n_heads, d_head, dropout)
        self.ff = FeedForward(dim, dim_out=dim_out, dropout=dropout)
        self.attn2 = CrossAttention(dim, n_heads, d_head, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.checkpoint = True

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x))


def authors_file(monkeypatch: pytest.MonkeyPatch, **entries: object) -> bytes:
    """`torch.save` of `entries` while the `ldm` modules exist (as in the authors' checkout);
    they are gone again when the file is read."""
    attention = types.ModuleType("ldm.modules.attention")
    attention.GEGLU, attention.FeedForward = GEGLU, FeedForward
    attention.CrossAttention = CrossAttention
    manager = types.ModuleType("ldm.modules.embedding_manager")
    manager.TransformerBlock = TransformerBlock
    buffer = io.BytesIO()
    with monkeypatch.context() as patch:
        for name, module in {
            "ldm": types.ModuleType("ldm"),
            "ldm.modules": types.ModuleType("ldm.modules"),
            "ldm.modules.attention": attention,
            "ldm.modules.embedding_manager": manager,
        }.items():
            patch.setitem(sys.modules, name, module)
        torch.save(entries, buffer)
    assert "ldm" not in sys.modules
    return buffer.getvalue()


def authors_block(seed: int = 0) -> TransformerBlock:
    """A trained-looking block: random weights everywhere, pickled in train mode as saved."""
    torch.manual_seed(seed)
    block = TransformerBlock(DIM, HEADS, HEAD_DIM, 0.1, N_PROMPTS * DIM)
    for parameter in block.parameters():
        nn.init.normal_(parameter, std=0.2)
    return block


def initial_embeddings() -> nn.Parameter:
    return nn.Parameter(torch.randn(1, DIM, generator=torch.Generator().manual_seed(1)), False)


def test_an_authors_file_imports_to_the_same_prompts(monkeypatch, tmp_path):
    block, init = authors_block(), initial_embeddings()
    path = tmp_path / "embeddings_gs-99999.pt"
    path.write_bytes(authors_file(monkeypatch, attention=block, initial_embeddings=init))
    x = init.detach().view(1, 1, DIM)
    with torch.no_grad():
        theirs = block.eval()(x, context=x)[-1].view(N_PROMPTS, DIM)
    assert torch.allclose(
        authors_generator(path.read_bytes(), str(path)).eval()(), theirs, atol=1e-5
    )
    out, art = tmp_path / "van-gogh", tmp_path / "art.png"
    Image.new("RGB", (8, 8)).save(art)
    args = ["--authors", str(path), "--out", str(out), "--styles", str(art)]
    assert import_style.main(args) == 0
    with torch.no_grad():
        imported = read_prompts(str(out / "prompts.safetensors"), {})()
    assert torch.allclose(imported, theirs, atol=1e-5)
    assert learned_from(str(out / "prompts.safetensors"), {}) == [str(art)]


def test_a_pickle_that_would_run_code_is_refused_without_running_it(monkeypatch, tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "embeddings.pt"
    torch.save({"attention": Exploit(), "initial_embeddings": initial_embeddings()}, path)
    with pytest.raises(UserError) as error:
        import_style.main(["--authors", str(path), "--out", str(tmp_path / "out")])
    message = str(error.value)
    assert "needs posix.system to be unpickled" in message and "refused" in message
    assert "\n" not in message
    assert not marker.exists() and not (tmp_path / "out").exists()


def without_norm3() -> TransformerBlock:
    block = authors_block()
    del block.norm3
    return block


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (lambda: {"attention": authors_block()}, "expected the keys attention and initial"),
        (
            lambda: {"attention": authors_block(), "initial_embeddings": torch.zeros(1, 16)},
            "does not hold LSAST prompt-generator weights .*wrong shapes for a 16-wide generator: ",
        ),
        (
            lambda: {"attention": without_norm3(), "initial_embeddings": initial_embeddings()},
            "does not hold LSAST prompt-generator weights .*norm3",
        ),
    ],
    ids=["keys", "shapes", "layers"],
)
def test_a_file_of_another_layout_is_one_line(monkeypatch, entries, message):
    with pytest.raises(UserError, match=message) as error:
        authors_generator(authors_file(monkeypatch, **entries()), "embeddings.pt")
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=r"^not.pt is not a PyTorch file \("):
        authors_generator(b"\x00" * 64, "not.pt")
