"""The limits of both diffusion teachers' steps and resolution, checked when their configs are
made: kept apart from `teacher_workers.ddim`, which needs torch, so parsing a command line does
not load it."""

from __future__ import annotations

from common.errors import UserError

MAX_STEPS = 999


def check_steps(steps: object) -> None:
    """DDIM steps of either teacher: SD's 1000 training timesteps, offset by 1, so 999 steps
    reach t = 999, the last one."""
    if not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
        raise UserError(f"--steps must be an integer in [2, {MAX_STEPS}], got {steps!r}")


def check_resolution(resolution: int) -> None:
    """The side of either teacher's square: the UNet takes latents whose sides are multiples
    of 8, i.e. images whose sides are multiples of 64 (the engine refuses other shapes)."""
    if resolution < 64 or resolution % 64:
        raise UserError(f"resolution must be a positive multiple of 64, got {resolution}")
