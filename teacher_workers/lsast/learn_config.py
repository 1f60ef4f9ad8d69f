"""The typed config of a style-learning run (`jobs.learn_style`), in a module without torch,
Ray or diffusers: its flags answer `--help`, and bad values are one error line, before any of
them load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import tyro

from common.cli import check_at_least, check_number
from common.ray_train import RayTrainConfig
from common.storage import Storage, StorageOptions, absolute_url
from teacher_workers.limits import check_resolution
from teacher_workers.lsast.config import STAGE_INDEXING_FLAG, LSASTConfig, StageIndexing
from teacher_workers.model_choice import check_model_name


@dataclass(frozen=True, kw_only=True)
class LearnConfig(RayTrainConfig):
    """One style-learning run, as its flags give it; `settings` must match when a run resumes."""

    styles: tuple[str, ...]
    """style images: files, folders, globs"""
    out: str
    """where the learned style goes (a folder or URL)"""
    storage_options: Annotated[StorageOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StorageOptions,
        repr=False,  # credentials stay out of what Ray shows
    )
    model: str = "tiny"
    """tiny | sd15-random | a Hub id | a folder"""
    revision: str | None = None
    """model revision on the Hub"""
    steps: int = 100_000
    """optimiser steps"""
    lr: float = 1e-6
    """AdamW learning rate (the code's)"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    resolution: int = LSASTConfig.resolution
    """training size, a multiple of 64"""
    stage_indexing: Annotated[StageIndexing, STAGE_INDEXING_FLAG] = LSASTConfig.stage_indexing
    """code: the released code's sliding window; paper: 10 stages x 3 groups"""
    grad_through_down_mid: bool = False
    """also train the encoder and middle prompts (the code trains the decoder's only)"""
    checkpoint_every: int = 500
    """steps"""
    seed: int = 0
    """seeds the generator's init and each step's draw"""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "out", absolute_url(self.out))
        check_number("--lr", self.lr)
        check_number("--weight-decay", self.weight_decay, inclusive=True)
        check_model_name(self.model)
        check_at_least(1, steps=self.steps, checkpoint_every=self.checkpoint_every)
        check_resolution(self.resolution)

    def storage(self) -> Storage:
        return Storage(self.out, self.storage_options)

    def settings(self) -> dict[str, Any]:
        """What the learned prompts depend on besides the step count."""
        keys = ("model", "revision", "lr", "weight_decay", "resolution", "stage_indexing")
        extra = ("grad_through_down_mid", "seed")
        return {key: getattr(self, key) for key in (*keys, *extra)}
