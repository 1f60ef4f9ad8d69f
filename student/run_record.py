"""Ray Train's record of a training run folder (<data>/train/<name>/), read by Ray Train itself.

`jobs.train` has Ray Train keep checkpoints ranked by `SCORE`; every later command restores the
run's `Result` from its folder and asks it for the best one by the same `SCORE`, so both name
the same checkpoint and none re-parses Ray Train's files or `metrics.jsonl` to choose.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from common.errors import UserError, first_line
from common.storage import Storage

if TYPE_CHECKING:  # Ray Train is imported where it is needed: a checkpoint folder needs none
    from ray.train import Checkpoint, CheckpointConfig, Result

SCORE, ORDER = "val_loss", "min"  # the best checkpoint has the lowest validation loss


def checkpoint_config(keep: int) -> CheckpointConfig:
    """The `keep` best checkpoints by `SCORE` and, as Ray Train always does, the latest."""
    from ray.train import CheckpointConfig

    return CheckpointConfig(
        num_to_keep=keep, checkpoint_score_attribute=SCORE, checkpoint_score_order=ORDER
    )


def read_run_record(run: Storage) -> Result | None:
    """Ray Train's record of the run folder `run` (its kept checkpoints and their metrics);
    None where there is none (no folder, or no record in it), as Ray Train sees a new run.
    A record that cannot be used (damaged, or naming a deleted checkpoint) is a `UserError`:
    Ray Train would fail on it too."""
    from ray.train import Result

    # not exported by ray.train; the one error of Result.from_path that re-running cannot fix
    from ray.train.v2._internal.exceptions import CheckpointManagerInitializationError

    from common.ray_connect import ray_filesystem

    try:
        return Result.from_path(run.root_path, storage_filesystem=ray_filesystem(run))
    except RuntimeError:
        return None
    except CheckpointManagerInitializationError as exc:
        cause = f"Ray Train's record of the run cannot be used ({first_line(exc)})"
        raise UserError(cause) from None


def best_checkpoint(record: Result) -> Checkpoint | None:
    """The kept checkpoint with the lowest validation loss, as Ray Train ranks them; the latest
    where none was reported with one; None for a run without checkpoints."""
    if any(SCORE in metrics for _, metrics in record.best_checkpoints or ()):
        return record.get_best_checkpoint(SCORE, ORDER)
    return record.checkpoint


def checkpoint_url(run: Storage, checkpoint: Checkpoint) -> str:
    """The URL of one of the run's checkpoints (Ray Train knows only its filesystem path)."""
    return run.url(posixpath.basename(checkpoint.path.rstrip("/")))
