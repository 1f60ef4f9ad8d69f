"""The student teacher's engine: a feed-forward student on a tile's square images, each style
encoded once for all the contents it is paired with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from teacher_workers.teacher import Progress


class StudentEngine:
    """A loaded student (eval mode, on its device and dtype) stylizing chosen pairs."""

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        self.model = model.eval()
        self.batch_size = batch_size
        self.param = next(model.parameters())

    def stylize_pairs(
        self,
        contents: torch.Tensor,
        styles: Sequence[Any],
        pairs: Sequence[tuple[int, int]],
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """contents [Nc, 3, R, R] and styles [3, R, R], all in [0, 1] -> the (content, style)
        pairs [P, 3, R, R] in [0, 1], in the order given; one forward pass per batch of
        contents of one style."""
        out = torch.empty(len(pairs), *contents.shape[1:])
        by_style: dict[int, list[int]] = {}
        for number, (_, style) in enumerate(pairs):
            by_style.setdefault(style, []).append(number)
        with torch.no_grad():
            for style, numbers in by_style.items():
                encoded = self.model.encode_style(self._input(styles[style][None]))
                for start in range(0, len(numbers), self.batch_size):
                    chunk = numbers[start : start + self.batch_size]
                    images = self._input(contents[[pairs[n][0] for n in chunk]])  # [B, 3, R, R]
                    batch = repeat_style(encoded, len(chunk))
                    result = self.model.space.denormalize(self.model(images, batch).float())
                    out[chunk] = result.clamp(0, 1).cpu()
                    if progress:
                        progress(len(chunk))
        return out

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, R, R] in [0, 1] -> the student's pixel space, on its device and dtype."""
        x = images.to(self.param.device, torch.float32)
        return self.model.space.normalize(x).to(self.param.dtype)

    def pair_passes(self, n_contents: int, n_styles: int, n_pairs: int) -> int:
        """Progress counts images: one per pair."""
        return n_pairs


def repeat_style(encoded: Any, batch: int) -> Any:
    """A style encoded once (every tensor [1, ...]) as a batch of `batch` (views, no copies)."""
    return tree_map(lambda t: t.expand(batch, *t.shape[1:]), encoded)
