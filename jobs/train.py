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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any

import torch
import tyro
from ray.train import FailureConfig, LoggingConfig, Result, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from common.cli import JobArgs, parse, ray_log_level, run_cli
from common.errors import UserError
from common.ray_connect import connect_ray, ray_filesystem
from common.storage import Storage
from student.dataset import Splits, read_splits, teacher_resolution
from student.run_record import best_checkpoint, checkpoint_config, checkpoint_url, read_run_record
from student.train_config import TrainConfig, check_init, check_weights
from student.train_loop import (
    cannot_resume,
    finished,
    load_checkpoint,
    metrics_key,
    train_loop_per_worker,
)
from teacher_workers.lsast_styles import learned_from


@dataclass(frozen=True, kw_only=True)
class Args(JobArgs):
    """The flags of `python -m jobs.train`: the run's config and `--verbose`."""

    config: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes]


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The run's config from its command line; a bad value raises `UserError`."""
    return parse(Args, argv, "jobs.train", __doc__).config


def validate(config: TrainConfig) -> Splits:
    """Every check that needs I/O, before Ray starts: data, manifests, the images each learned
    style (LSAST) was learned from, which stand for it as the student's style input, `--init`,
    crop size. (`check_weights` follows it: it may change the config the workers get.)"""
    storage = config.storage()
    splits = read_splits(storage, config.teacher_hash)
    learned = {url: learned_from(url, config.storage_options) for url in splits.learned_styles()}
    splits = replace(splits, style_images=learned)
    check_init(config)
    if config.tensorboard:
        config.tensorboard_storage().check_writable()
    size = teacher_resolution(storage, splits.train[0])
    if size is not None and size < config.crop_size:
        raise UserError(f"--crop-size {config.crop_size}: the targets are only {size}px")
    return splits


def run_storage(config: TrainConfig) -> Storage:
    """The run folder <data>/train/<name>/, where Ray Train keeps its record and checkpoints."""
    return Storage(config.storage().url(f"train/{config.name}"), config.storage_options)


def run_record(config: TrainConfig) -> Result | None:
    """Ray Train's record of this run name (its checkpoints and their metrics); None for a new
    run. A record that cannot be used is one error line: Ray Train would fail on it too."""
    try:
        return read_run_record(run_storage(config))
    except UserError as exc:
        raise cannot_resume(config, exc) from None


def resume_state(config: TrainConfig, record: Result | None) -> dict[str, Any] | None:
    """The training state of the checkpoint Ray Train will resume this run from (the latest in
    its `record`), checked in full; None for a new run.

    Checking here, once, turns a damaged checkpoint into one error line: in the workers it
    would fail every restart Ray Train makes.
    """
    if record is None or record.checkpoint is None:
        return None
    try:
        restored = load_checkpoint(
            checkpoint_url(run_storage(config), record.checkpoint),
            config,
            torch.device("cpu"),
            False,
            config.storage_options,
        )
    except UserError as exc:
        raise cannot_resume(config, exc) from None
    return restored.state


def completion(config: TrainConfig, state: dict[str, Any], record: Result) -> str:
    """The line for a run that has nothing left to do, with where its best checkpoint is."""
    best = best_checkpoint(record)
    assert best is not None  # `state` came from one of its checkpoints
    val_loss = min(entry["val_loss"] for entry in state["history"])
    if state["epoch"] >= config.epochs:
        why, advice = f"epoch {state['epoch']} of {config.epochs}", "more --epochs"
    else:
        why, advice = f"early stop at epoch {state['epoch']}", "a larger --patience"
    return (
        f"run {config.name!r} is already complete ({why}; best val_loss {val_loss:.5f} at "
        f"{checkpoint_url(run_storage(config), best)}); nothing to do. Pass {advice} to train "
        "it further."
    )


def run_config(config: TrainConfig) -> RunConfig:
    """Ray Train writes to <data>/train/<name>/ through the same filesystem as the data."""
    storage = config.storage()
    return RunConfig(
        name=config.name,
        storage_path=storage.path("train"),
        storage_filesystem=ray_filesystem(storage),
        failure_config=FailureConfig(max_failures=config.max_failures),
        # Ray Train's controller and workers: quiet as the rest of Ray (see `connect_ray`)
        logging_config=LoggingConfig(log_level=logging.getLevelName(ray_log_level())),
        checkpoint_config=checkpoint_config(config.keep_checkpoints),
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
    """Where the checkpoints, metrics and TensorBoard records of a finished run are."""
    storage = config.storage()
    lines = [
        f"metrics: {storage.url(metrics_key(config.name))}",
        f"tensorboard: {config.tensorboard_url()}",
    ]
    for label, checkpoint in (
        ("latest checkpoint", result.checkpoint),
        ("best checkpoint", best_checkpoint(result)),
    ):
        if checkpoint is not None:
            lines.append(f"{label}: {checkpoint_url(run_storage(config), checkpoint)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    record = run_record(config)
    state = resume_state(config, record)
    if state is not None and finished(state, config):
        assert record is not None
        print(completion(config, state, record))
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
