"""MicroAST's typed config, in a module without torch: `jobs.train` checks it, and `--help`
shows it, before any network is built."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MicroASTConfig:
    """MicroAST has no size knobs (its released weights fix them); only the stylization
    strength."""

    alpha: float = 1.0
    """content-style trade-off: 1 = full style (the authors' default), 0 = content features"""

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            raise ValueError(f"MicroASTConfig.alpha must be a number, got {self.alpha!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"MicroASTConfig.alpha must be in [0, 1], got {self.alpha}")
