"""Train the STTR student on the teacher's targets with Ray Train (DDP, one worker per GPU).

    python -m jobs.train --data s3://bucket/run --name l1 --workers 4 --gpu
    ray job submit --address http://HEAD:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.train --data s3://bucket/run --name l1 --workers 4 --gpu

Checkpoints and metrics go to <data>/train/<name>/; the same --name again resumes the run
(after its checkpoint is checked here, so a damaged one is one error line), and a run that has
nothing left to do says so without starting Ray. With RAY_ADDRESS set (`ray job submit` sets
it) the job joins that cluster, else it starts a local one.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import pyarrow.fs
import torch
from fsspec.implementations.local import LocalFileSystem
from ray.train import CheckpointConfig, FailureConfig, Result, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

# not exported by ray.train; the one error of Result.from_path that re-running cannot fix
from ray.train.v2._internal.exceptions import CheckpointManagerInitializationError

from common.cli import parse, run_cli
from common.errors import UserError, first_line
from common.ray_connect import connect_ray
from common.storage import Storage
from student.checkpoint import resolve_checkpoint
from student.dataset import Splits, read_splits, teacher_resolution
from student.train_config import TrainConfig, check_init, check_weights
from student.train_loop import (
    cannot_resume,
    finished,
    load_checkpoint,
    metrics_key,
    train_loop_per_worker,
)


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The run's config from its command line; a bad value raises `UserError`."""
    return parse(TrainConfig, argv, "jobs.train", __doc__)


def validate(config: TrainConfig) -> Splits:
    """Every check that needs I/O, before Ray starts: data, manifests, `--init`, crop size.
    (`check_weights` follows it: it may change the config the workers get.)"""
    storage = config.storage()
    splits = read_splits(storage, config.teacher_hash)
    check_init(config)
    size = teacher_resolution(storage, splits.train[0])
    if size is not None and size < config.crop_size:
        raise UserError(f"--crop-size {config.crop_size}: the targets are only {size}px")
    return splits


def ray_filesystem(storage: Storage) -> pyarrow.fs.FileSystem | None:
    """The data's filesystem as Ray Train takes it (None: Ray's own local one)."""
    if isinstance(storage.fs, LocalFileSystem):
        return None
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(storage.fs))


@contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """Hide a library's INFO lines, e.g. Ray Train announcing the run record it reads."""
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def resume_state(config: TrainConfig) -> dict[str, Any] | None:
    """The training state of the checkpoint Ray Train will resume this run from (the latest in
    its record of the run), checked in full; None for a new run.

    Checking here, once, turns a damaged checkpoint into one error line: in the workers it
    would fail every restart Ray Train makes.
    """
    storage = config.storage()
    try:
        with quiet("ray.train"):
            record = Result.from_path(
                storage.path(f"train/{config.name}"), storage_filesystem=ray_filesystem(storage)
            )
    except RuntimeError:  # no run folder or no record in it: Ray Train starts afresh too
        return None
    except CheckpointManagerInitializationError as exc:  # damaged, or names a deleted folder
        cause = f"Ray Train's record of the run cannot be used ({first_line(exc)})"
        raise cannot_resume(config, UserError(cause)) from None
    if record.checkpoint is None:
        return None
    name = posixpath.basename(record.checkpoint.path.rstrip("/"))
    url = storage.url(f"train/{config.name}/{name}")
    try:
        restored = load_checkpoint(url, config, torch.device("cpu"), False, storage.options)
    except UserError as exc:
        raise cannot_resume(config, exc) from None
    return restored.state


def completion(config: TrainConfig, state: dict[str, Any]) -> str:
    """The line for a run that has nothing left to do, with where its best checkpoint is."""
    storage = config.storage()
    best = resolve_checkpoint(storage.url(f"train/{config.name}"), storage.options)
    val_loss = min(record["val_loss"] for record in state["history"])
    if state["epoch"] >= config.epochs:
        why, advice = f"epoch {state['epoch']} of {config.epochs}", "more --epochs"
    else:
        why, advice = f"early stop at epoch {state['epoch']}", "a larger --patience"
    return (
        f"run {config.name!r} is already complete ({why}; best val_loss {val_loss:.5f} at "
        f"{best}); nothing to do. Pass {advice} to train it further."
    )


def run_config(config: TrainConfig) -> RunConfig:
    """Ray Train writes to <data>/train/<name>/ through the same filesystem as the data."""
    storage = config.storage()
    return RunConfig(
        name=config.name,
        storage_path=storage.path("train"),
        storage_filesystem=ray_filesystem(storage),
        failure_config=FailureConfig(max_failures=config.max_failures),
        # the best checkpoint by validation loss, and always the latest (to resume from)
        checkpoint_config=CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
        ),
    )


def build_trainer(config: TrainConfig, splits: Splits) -> TorchTrainer:
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config, "splits": splits},
        scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=config.gpu),
        run_config=run_config(config),
    )


def train(config: TrainConfig, splits: Splits) -> Result:
    """Run Ray Train; what the workers found a retry cannot fix is a `UserError`."""
    result = build_trainer(config, splits).fit()
    if result.return_value is not None:
        raise UserError(result.return_value)
    return result


def describe(config: TrainConfig, result: Result) -> str:
    """Where the checkpoints and metrics of a finished run are."""
    storage = config.storage()
    run = f"train/{config.name}"
    lines = [f"metrics: {storage.url(metrics_key(config.name))}"]
    best = result.get_best_checkpoint("val_loss", "min") if result.best_checkpoints else None
    for label, checkpoint in (("latest checkpoint", result.checkpoint), ("best checkpoint", best)):
        if checkpoint is not None:
            name = posixpath.basename(checkpoint.path.rstrip("/"))
            lines.append(f"{label}: {storage.url(f'{run}/{name}')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    state = resume_state(config)
    if state is not None and finished(state, config):
        print(completion(config, state))
        return 0
    splits = validate(config)
    config = check_weights(config, fresh=state is None)
    print(f"training on {len(splits.train)} pairs, validating on {len(splits.val)}")
    connect_ray()
    print(describe(config, train(config, splits)))
    return 0


# `styleid-train` (pyproject.toml [project.scripts]) and `python -m jobs.train`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
