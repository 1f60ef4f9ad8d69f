"""What both Ray Train drivers (jobs.train, jobs.learn_style) share: the flags of a Ray Train
run, declared once, and the `RunConfig` built from them (storage, name, restarts, kept
checkpoints, a console as quiet as the rest of Ray). Ray loads where a run starts: the
configs' flags answer `--help` without it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.cli import check_at_least, ray_log_level
from common.storage import Storage

if TYPE_CHECKING:
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig


@dataclass(frozen=True, kw_only=True)
class RayTrainConfig:
    """How many Ray Train workers, on what, restarted how often."""

    workers: int = 1
    """Ray Train workers (DDP)"""
    gpu: bool = False
    """one GPU per worker (NCCL; the student also autocasts)"""
    max_failures: int = 3
    """worker-group restarts from the last checkpoint before giving up (-1: no limit)"""

    def __post_init__(self) -> None:
        check_at_least(1, workers=self.workers)
        check_at_least(-1, max_failures=self.max_failures)  # -1: retry without limit

    def scaling(self) -> ScalingConfig:
        from ray.train import ScalingConfig

        return ScalingConfig(num_workers=self.workers, use_gpu=self.gpu)


def run_config(
    storage: Storage,
    folder: str,
    name: str,
    config: RayTrainConfig,
    checkpoints: CheckpointConfig | None = None,
) -> RunConfig:
    """Ray Train's record of run `name` under `folder` of the run's storage, through the same
    filesystem as its data; the controller and workers log as quietly as the rest of Ray."""
    from ray.train import FailureConfig, LoggingConfig, RunConfig

    from common.ray_connect import ray_filesystem

    return RunConfig(
        name=name,
        storage_path=storage.path(folder),
        storage_filesystem=ray_filesystem(storage),
        failure_config=FailureConfig(max_failures=config.max_failures),
        logging_config=LoggingConfig(log_level=logging.getLevelName(ray_log_level())),
        checkpoint_config=checkpoints,
    )
