"""The LSAST inference configuration: every knob that changes a target, validated where it enters.

Defaults are the authors' `test.py`: img2img at strength 0.7 over 50 DDIM steps, guidance 10
with the empty prompt, a canny ControlNet (thresholds 100/200) at scale 1.0, the code's sliding
window of prompts, seed 41, and (our choice, see LSAST.md's open questions) no prompt dropout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

import tyro

from common.cli import choice_flag
from common.errors import UserError
from teacher_workers.limits import check_resolution, check_steps

StageIndexing = Literal["code", "paper"]  # which prompt a timestep stage takes (`prompts`)
STAGE_INDEXING = get_args(StageIndexing)
DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_canny"
TINY_CONTROLNET = "tiny"  # built from the model's UNet (`control.load_controlnet`)
# Bumped whenever an LSAST target changes for the same config.
LSAST_ENGINE_VERSION = 1
STAGE_INDEXING_FLAG = choice_flag("--stage-indexing", STAGE_INDEXING)


@dataclass(frozen=True)
class LSASTConfig:
    """LSAST inference settings and how the engine batches work (batch size changes nothing).

    Its own flags (`--teacher lsast`, or jobs.evaluate's `--also-teacher lsast`) are declared
    here; steps, resolution, seed and batch size come from the flags both teachers share, and
    no --controlnet from the model, all folded in by `TeacherOptions.chosen`."""

    steps: tyro.conf.Suppress[int] = 50
    strength: float = 0.7
    """img2img strength"""
    guidance: float = 10.0
    """classifier-free guidance"""
    control_scale: float = 1.0
    """ControlNet scale"""
    canny: Annotated[tuple[int, int], tyro.conf.arg(metavar="LOW HIGH")] = (100, 200)
    """canny edge thresholds"""
    stage_indexing: Annotated[StageIndexing, STAGE_INDEXING_FLAG] = "code"
    """code: the released code's sliding window; paper: 10 stages x 3 groups"""
    prompt_dropout: bool = False
    """keep the generator's dropout on (seeded)"""
    resolution: tyro.conf.Suppress[int] = 512
    seed: tyro.conf.Suppress[int] = 41
    controlnet: Annotated[
        str | None,
        tyro.conf.arg(
            help="canny ControlNet: Hub id, folder or tiny (ControlNetModel.from_unet of the "
            f"model); none: {DEFAULT_CONTROLNET}, or tiny for a preset --model"
        ),
    ] = None
    controlnet_revision: str | None = None
    """revision of the --controlnet Hub id (pinned to its commit for the run)"""
    controlnet_digest: tyro.conf.Suppress[str | None] = None  # a pinned folder's content digest
    batch_size: tyro.conf.Suppress[int] = 4

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
        low, high = self.canny
        if not 0 <= low <= high:
            raise UserError(f"canny thresholds must satisfy 0 <= low <= high, got {low}, {high}")
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
        fields["canny_low"], fields["canny_high"] = fields.pop("canny")
        digest, revision = fields.pop("controlnet_digest"), fields.pop("controlnet_revision")
        if digest:
            fields["controlnet"] = f"sha256:{digest}"
        elif revision:
            fields["controlnet"] = f"{self.controlnet}@{revision}"
        return fields


def check_controlnet_name(name: str) -> None:
    """Refuse a ControlNet argument that is neither `tiny`, a folder nor a Hub id."""
    if name == TINY_CONTROLNET or Path(name).is_dir():
        return
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise UserError(
            f"unknown ControlNet {name!r}: use {TINY_CONTROLNET}, a local diffusers ControlNet "
            "folder, or a Hugging Face id such as lllyasviel/control_v11p_sd15_canny"
        )
