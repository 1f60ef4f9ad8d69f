"""LSAST's prompts: which learned prompt each timestep stage and layer group uses, and how a
prompt becomes a cross-attention context (through the frozen CLIP text encoder).

The text prompt is just the placeholder `*`; each learned token embedding P*_i replaces the
placeholder's token embedding *before* the encoder (a hook on its input embeddings), so the
context C_i is CLIP's last hidden state for that prompt, and gradients reach P* through CLIP.

Token ids come from the model's own tokenizer: with CLIP's vocabulary they are the authors'
constants (`*` 265, `a` 320), and any SD 1.x tokenizer that has the two tokens works.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from common.errors import UserError
from teacher_workers.lsast.config import STAGE_INDEXING, StageIndexing

PLACEHOLDER = "*"
PLACEHOLDER_TOKEN = 265  # CLIP's `*</w>`
INITIALIZER = "a"  # the code indexes its initializer string 'a painting' and so takes 'a'
INIT_TOKEN = 320  # CLIP's `a</w>`
N_TIMESTEPS = 1000


def stage(t: int) -> int:
    """The timestep stage: int(t * 10 / 1000) in the authors' code, which is t // 100."""
    if not 0 <= t < N_TIMESTEPS:
        raise ValueError(f"timestep {t} is outside 0..{N_TIMESTEPS - 1}")
    return t // 100


def stage_prompts(t: int, indexing: StageIndexing) -> tuple[int, int, int]:
    """Indices of the (down, mid, up) prompts at timestep t.

    `code`: the released code's sliding window cond[s : s + 3], so neighbouring stages share
    prompts and only P_0..P_11 are used. `paper`: 10 stages x 3 layer groups = 30 prompts,
    (P_3s, P_3s+1, P_3s+2)."""
    s = stage(t)
    if indexing == "code":
        return s, s + 1, s + 2
    if indexing == "paper":
        return 3 * s, 3 * s + 1, 3 * s + 2
    raise ValueError(f"stage indexing must be one of {STAGE_INDEXING}, got {indexing!r}")


@dataclass(frozen=True)
class PromptTokens:
    """Token ids of the two prompts LSAST encodes, `*` and `""`, padded as SD pads (to 77), and
    of the two tokens it uses on their own: the placeholder `*` and the generator's init `a`."""

    placeholder: torch.Tensor  # [1, L]: BOS, *, EOS, padding
    empty: torch.Tensor  # [1, L]: BOS, EOS, padding
    placeholder_id: int
    init_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int, where: str) -> PromptTokens:
        """Ids from the model's CLIP tokenizer (SD's pads with EOS to `model_max_length`), for
        a text encoder of `vocab_size` token embeddings. A tokenizer without `*` or `a` as one
        token of that table is a `UserError` that names the model (`where`)."""

        def ids(text: str) -> torch.Tensor:
            return tokenizer(
                [text],
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids

        def token(text: str, role: str) -> int:
            found = tokenizer(text, add_special_tokens=False).input_ids
            if len(found) != 1 or found[0] == tokenizer.unk_token_id:
                raise UserError(
                    f"{where}: its tokenizer has no token {text!r} ({role}), which LSAST needs; "
                    "use an SD 1.x model with CLIP's tokenizer"
                )
            if not 0 <= found[0] < vocab_size:
                raise UserError(
                    f"{where}: its tokenizer gives {text!r} the id {found[0]}, outside the "
                    f"{vocab_size} token embeddings of its text encoder"
                )
            return found[0]

        placeholder_id = token(PLACEHOLDER, "the style placeholder")
        init_id = token(INITIALIZER, "the prompt generator's input")
        return cls(ids(PLACEHOLDER), ids(""), placeholder_id, init_id)

    @classmethod
    def hand_made(cls, vocab_size: int, length: int = 77) -> PromptTokens:
        """Ids for a random-weight text encoder that has no tokenizer: CLIP's layout, with BOS
        and EOS the last two ids of the vocabulary (as in CLIP) and `*` and `a` at their CLIP
        ids."""
        bos, eos = vocab_size - 2, vocab_size - 1
        placeholder = torch.full((1, length), eos)
        placeholder[0, :2] = torch.tensor([bos, PLACEHOLDER_TOKEN])
        empty = torch.full((1, length), eos)
        empty[0, 0] = bos
        return cls(placeholder, empty, PLACEHOLDER_TOKEN, INIT_TOKEN)


class PromptEncoder:
    """Contexts for learned prompts: C_i = CLIP("*" with P*_i as the placeholder's embedding).

    The encoder stays frozen, but is not wrapped in no_grad: training differentiates through
    it. P* is rounded to float32 before it enters, as the authors' code does."""

    def __init__(self, text_encoder: nn.Module, tokens: PromptTokens) -> None:
        self.text_encoder = text_encoder
        self.tokens = tokens

    @property
    def device(self) -> torch.device:
        return self.text_encoder.get_input_embeddings().weight.device

    def encode(self, prompts: torch.Tensor) -> torch.Tensor:
        """[n, D] learned prompts -> [n, L, D] contexts, one per prompt."""
        ids = self.tokens.placeholder.to(self.device).repeat(len(prompts), 1)
        where = (ids == self.tokens.placeholder_id)[..., None]
        with self._replaced(
            lambda emb: torch.where(where, prompts.float().to(emb.dtype)[:, None], emb)
        ):
            return self.text_encoder(ids)[0]

    def encode_empty(self) -> torch.Tensor:
        """[1, L, D]: the unconditional context (every one of the authors' 30 copies is this)."""
        return self.text_encoder(self.tokens.empty.to(self.device))[0]

    @contextmanager
    def _replaced(self, edit) -> Iterator[None]:
        """The input embeddings' output passes through `edit` for the duration."""
        hook = self.text_encoder.get_input_embeddings().register_forward_hook(
            lambda module, args, output: edit(output)
        )
        try:
            yield
        finally:
            hook.remove()
