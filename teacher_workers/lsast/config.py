"""The LSAST inference configuration: every knob that changes a target, validated where it enters.

Defaults are the authors' `test.py`: img2img at strength 0.7 over 50 DDIM steps, guidance 10
with the empty prompt, a canny ControlNet (thresholds 100/200) at scale 1.0, the code's sliding
window of prompts, seed 41, and (our choice, see LSAST.md's open questions) no prompt dropout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

import tyro

from common.cli import choice_flag
from common.errors import UserError
from teacher_workers.lsast.prompts import STAGE_INDEXING, StageIndexing
from teacher_workers.styleid.config import check_resolution, check_steps

DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_canny"
# Bumped whenever an LSAST target changes for the same config.
LSAST_ENGINE_VERSION = 1
STAGE_INDEXING_FLAG = choice_flag("--stage-indexing", STAGE_INDEXING)


@dataclass(frozen=True)
class LSASTConfig:
    """LSAST inference settings and how the engine batches work (batch size changes nothing)."""

    steps: int = 50
    strength: float = 0.7
    guidance: float = 10.0
    control_scale: float = 1.0
    canny_low: int = 100
    canny_high: int = 200
    stage_indexing: StageIndexing = "code"
    prompt_dropout: bool = False
    resolution: int = 512
    seed: int = 41
    controlnet: str = DEFAULT_CONTROLNET
    controlnet_revision: str | None = None  # a Hub id's revision; its commit once pinned
    controlnet_digest: str | None = None  # a pinned folder's content digest
    batch_size: int = 4

    def __post_init__(self) -> None:
        check_steps(self.steps)
        if not 1 <= self.denoising_steps <= self.steps - 1:
            raise UserError(
                f"strength {self.strength!r} x {self.steps} steps must give 1 to {self.steps - 1} "
                "denoising steps (the noise is added one DDIM step above the first of them)"
            )
        if not self.guidance >= 1.0:
            raise UserError(f"guidance must be >= 1, got {self.guidance!r}")
        if not self.control_scale >= 0.0:
            raise UserError(f"control scale must be >= 0, got {self.control_scale!r}")
        if not 0 <= self.canny_low <= self.canny_high:
            raise UserError(
                f"canny thresholds must satisfy 0 <= low <= high, got {self.canny_low}, "
                f"{self.canny_high}"
            )
        if self.stage_indexing not in STAGE_INDEXING:
            raise UserError(
                f"stage indexing must be one of {STAGE_INDEXING}, got {self.stage_indexing!r}"
            )
        check_resolution(self.resolution)
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size!r}")

    @property
    def denoising_steps(self) -> int:
        """int(strength x steps), as the authors' `t_enc`."""
        return int(self.strength * self.steps)

    def output_fields(self) -> dict:
        """Everything here that changes a target (batch size does not); a pinned ControlNet
        counts by its digest (a folder, wherever it lies) or its Hub id at its commit."""
        fields = asdict(self)
        fields.pop("batch_size")
        digest, revision = fields.pop("controlnet_digest"), fields.pop("controlnet_revision")
        if digest:
            fields["controlnet"] = f"sha256:{digest}"
        elif revision:
            fields["controlnet"] = f"{self.controlnet}@{revision}"
        return fields


@dataclass(frozen=True, kw_only=True)
class LSASTFlags:
    """The LSAST teacher's own flags (`--teacher lsast`, or jobs.evaluate's `--also-teacher
    lsast`); `TeacherOptions.chosen` folds them and the shared --steps, --resolution, --seed and
    --batch-size into the run's `LSASTConfig`."""

    # each named as its `LSASTConfig` field (`canny`: canny_low, canny_high): `chosen` passes all
    controlnet: Annotated[
        str | None,
        tyro.conf.arg(
            help="canny ControlNet: Hub id, folder or tiny (ControlNetModel.from_unet of the "
            f"model); none: {DEFAULT_CONTROLNET}, or tiny for a preset --model"
        ),
    ] = None
    controlnet_revision: str | None = None
    """revision of the --controlnet Hub id (pinned to its commit for the run)"""
    strength: float = LSASTConfig.strength
    """img2img strength"""
    guidance: float = LSASTConfig.guidance
    """classifier-free guidance"""
    control_scale: float = LSASTConfig.control_scale
    """ControlNet scale"""
    canny: Annotated[tuple[int, int], tyro.conf.arg(metavar="LOW HIGH")] = (
        LSASTConfig.canny_low,
        LSASTConfig.canny_high,
    )
    """canny edge thresholds"""
    stage_indexing: Annotated[StageIndexing, STAGE_INDEXING_FLAG] = LSASTConfig.stage_indexing
    """code: the released code's sliding window; paper: 10 stages x 3 groups"""
    prompt_dropout: bool = LSASTConfig.prompt_dropout
    """keep the generator's dropout on (seeded)"""
