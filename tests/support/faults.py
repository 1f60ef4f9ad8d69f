"""Lost workers for the fault tests, without hooks in the code under test: a per-worker function
that wraps the real one, and whose last rank exits as a lost node would (`os._exit`, no
cleanup) at one point of the run unless `marker` exists. It writes `marker` first, so the
worker group Ray Train restarts runs on: the test then checks that the run resumed from its last
checkpoint. Instances travel to Ray's workers by pickle (this module is on their path)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import ray.train

from student.train_loop import WorkerRun, train_loop_per_worker
from teacher_workers.lsast import learning


def exit_once(marker: str, where: str) -> None:
    """Exit this worker process, the first time only, if it is the last rank."""
    context = ray.train.get_context()
    if context.get_world_rank() != context.get_world_size() - 1 or Path(marker).exists():
        return
    Path(marker).write_text(f"rank {context.get_world_rank()} exited at {where}\n")
    os._exit(1)


@dataclass(frozen=True)
class LoseWorkerAtEpoch:
    """`jobs.train`'s per-worker function, losing its last rank as `epoch` starts. Its workers'
    temporary files go to `temp`, for the test to see what a lost worker group leaves there."""

    epoch: int
    marker: str
    temp: str

    def __call__(self, loop_config: dict[str, Any]) -> str | None:
        run_epoch: Callable[[WorkerRun], dict[str, Any]] = WorkerRun.run_epoch

        def crashing(run: WorkerRun) -> dict[str, Any]:
            if run.epoch == self.epoch:
                exit_once(self.marker, f"epoch {run.epoch}")
            return run_epoch(run)

        with (
            mock.patch.object(WorkerRun, "run_epoch", crashing),
            mock.patch.object(tempfile, "tempdir", self.temp),
        ):
            return train_loop_per_worker(loop_config)


@dataclass(frozen=True)
class LoseWorkerAtStep:
    """`jobs.learn_style`'s per-worker function, losing its last rank as `step` starts (when
    the step draws its images)."""

    step: int
    marker: str

    def __call__(self, loop_config: dict[str, Any]) -> str | None:
        step_seed = learning.step_seed

        def crashing(seed: int, step: int, rank: int) -> int:
            if step == self.step:
                exit_once(self.marker, f"step {step}")
            return step_seed(seed, step, rank)

        with mock.patch.object(learning, "step_seed", crashing):
            return learning.learn_loop_per_worker(loop_config)
