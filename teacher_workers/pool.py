"""The generate job's actor pool as flags: apart from `teacher_workers.generation`, which runs
it on Ray, so that parsing the command line does not load Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from common.cli import check_number, pair_flag
from common.errors import UserError


@dataclass(frozen=True)
class PoolConfig:
    """How many actors (min..max, so an autoscaler can grow the pool), what each holds, and how
    long to wait for a node that fits one. Checked when made, so the generate job refuses a bad
    flag before it starts Ray or touches the output; `gpus_per_worker` None is "decide once the
    cluster is known"."""

    workers: Annotated[tuple[int, int], pair_flag(":", "--workers", "MIN:MAX")] = (1, 1)
    """MIN:MAX actors (an autoscaler grows the pool)"""
    gpus_per_worker: float | None = None
    """default: 1 if the cluster has GPUs now, else 0"""
    cpus_per_worker: float = 1.0
    """CPUs each actor holds"""
    startup_timeout_s: Annotated[
        float, tyro.conf.arg(name="startup-timeout", metavar="SECONDS")
    ] = 900.0
    """on an autoscaling cluster, how long to wait for a node that fits one worker"""

    def __post_init__(self) -> None:
        if not 1 <= self.workers[0] <= self.workers[1]:
            raise UserError(
                "--workers must be MIN:MAX with 1 <= MIN <= MAX, got "
                f"{self.workers[0]}:{self.workers[1]}"
            )
        if self.gpus_per_worker is not None:
            check_number("--gpus-per-worker", self.gpus_per_worker, inclusive=True)
        check_number("--cpus-per-worker", self.cpus_per_worker)
        check_number("--startup-timeout", self.startup_timeout_s)
