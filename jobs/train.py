r"""Train the STTR student on the teacher's targets with Ray Train (DDP, one worker per GPU).

    python -m jobs.train --data s3://bucket/run --name l1 --workers 4 --gpu
    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.train --data s3://bucket/run --name l1 --workers 4 --gpu

Checkpoints and metrics go to <data>/train/<name>/; the same --name again resumes the run
(after its checkpoint is checked here, so a damaged one is one error line), and a run that has
nothing left to do says so without starting Ray. With RAY_ADDRESS set (`ray job submit` sets
it) the job joins that cluster, else it starts a local one.
"""

# torch, Ray and the training loop are imported in the functions that use them: `--help` (and
# jobs.pipeline, which parses these flags) loads none of them

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import tyro

from common.cli import JobArgs, parse, run_cli
from common.errors import UserError
from common.ray_train import run_config
from common.run_log import run_log
from common.storage import Storage
from student.run_record import best_checkpoint, checkpoint_config, checkpoint_url, read_run_record
from student.train_config import TrainConfig, check_init, check_weights
from teacher_workers.registry import learned_styles

if TYPE_CHECKING:
    from ray.train import Result
    from ray.train.torch import TorchTrainer

    from student.dataset import Splits


@dataclass(frozen=True, kw_only=True)
class Args(JobArgs):
    """The flags of `python -m jobs.train`: the run's config and `--verbose`."""

    config: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes]


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The run's config from its command line; a bad value raises `UserError`."""
    return parse(Args, argv, "jobs.train", __doc__).config


def validate(config: TrainConfig) -> Splits:
    """Every check that needs I/O, before Ray starts: data, manifests, the images each learned
    style (LSAST) was learned from, which stand for it as the student's style input, a writable
    root, `--init`, crop size. (`check_weights` follows it: it may change the config the workers
    get.)"""
    from student.dataset import read_splits, teacher_resolution
    from teacher_workers.lsast.styles import learned_from

    storage = config.storage()
    splits = read_splits(storage, config.teacher_hash)
    storage.check_writable()  # the run folder and its log go there
    learned = {
        url: learned_from(url, config.storage_options)
        for url in learned_styles([*splits.train, *splits.val])
    }
    splits = replace(splits, style_images=learned)
    check_init(config)
    if config.tensorboard:
        config.tensorboard_storage().check_writable()
    size = teacher_resolution(storage, splits.train[0])
    if size is not None and size < config.crop_size:
        raise UserError(f"--crop-size {config.crop_size}: the targets are only {size}px")
    return splits


def resume_state(
    config: TrainConfig,
) -> tuple[Result | None, dict[str, Any] | None, TrainConfig]:
    """Ray Train's record of this run name (its checkpoints and their metrics), the training
    state of the checkpoint it will resume from, checked in full (None for a new run), and the
    config to train with.

    Checking here, once, turns a damaged record or checkpoint into one error line: Ray Train
    would fail on the record too, and in the workers a checkpoint would fail every restart. A
    latest checkpoint that cannot be read gives way, with a line saying so, to the newest kept
    one that can (`TrainConfig.resume_from`).
    """
    from student.train_loop import cannot_resume

    try:
        run = config.run_storage()
        record = read_run_record(run)
        if record is None or record.checkpoint is None:
            return record, None, config
        url = checkpoint_url(run, record.checkpoint)
        try:
            return record, readable_state(url, config), config
        except UserError as exc:
            damaged = exc
        for older in kept_urls(record, url, run):
            with contextlib.suppress(UserError):
                state = readable_state(older, config)
                print(
                    f"the latest checkpoint cannot be used ({damaged}); resuming from {older}, "
                    "the newest kept checkpoint that can"
                )
                return record, state, replace(config, resume_from=older)
        raise damaged
    except UserError as exc:
        raise cannot_resume(config, exc) from None


def readable_state(url: str, config: TrainConfig) -> dict[str, Any]:
    """The training state of the checkpoint at `url`, checked as a worker loads it."""
    import torch

    from student.train_loop import load_checkpoint

    return load_checkpoint(url, config, torch.device("cpu"), False, config.storage_options).state


def kept_urls(record: Result, latest: str, run: Storage) -> list[str]:
    """The run's other kept checkpoints, newest (by their epoch folder's name) first."""
    urls = {checkpoint_url(run, checkpoint) for checkpoint, _ in record.best_checkpoints or ()}
    return sorted(urls - {latest}, reverse=True)


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
        f"{checkpoint_url(config.run_storage(), best)}); nothing to do. Pass {advice} to train "
        "it further."
    )


def build_trainer(config: TrainConfig, splits: Splits) -> TorchTrainer:
    """Ray Train writes to <data>/train/<name>/ through the same filesystem as the data."""
    from ray.train.torch import TorchTrainer

    from student.train_loop import train_loop_per_worker

    checkpoints = checkpoint_config(config.keep_checkpoints)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config, "splits": splits},
        scaling_config=config.scaling(),
        run_config=run_config(config.storage(), "train", config.name, config, checkpoints),
    )


def train(config: TrainConfig, splits: Splits) -> Result:
    """Run Ray Train; what the workers found a retry cannot fix is a `UserError`."""
    result = build_trainer(config, splits).fit()
    if result.return_value is not None:
        raise UserError(result.return_value)
    return result


def describe(config: TrainConfig, result: Result) -> str:
    """Where the checkpoints, metrics and TensorBoard records of a finished run are."""
    from student.train_loop import metrics_key

    lines = [
        f"metrics: {config.storage().url(metrics_key(config.name))}",
        f"tensorboard: {config.tensorboard_url()}",
    ]
    checkpoints = {"latest": result.checkpoint, "best": best_checkpoint(result)}
    for label, checkpoint in checkpoints.items():
        if checkpoint is not None:
            lines.append(f"{label} checkpoint: {checkpoint_url(config.run_storage(), checkpoint)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    # torch and Ray load once the flags are parsed: `--help` and a bad flag need neither
    from common.ray_connect import connect_ray
    from student.run_options import note_options
    from student.train_loop import finished

    record, state, config = resume_state(config)
    if state is not None and finished(state, config):
        assert record is not None
        print(completion(config, state, record))
        return 0
    splits = validate(config)
    note_options(config, resumed=state is not None)
    with run_log(config.storage(), f"train-{config.name}"):
        config = check_weights(config, fresh=state is None)
        print(f"training on {len(splits.train)} pairs, validating on {len(splits.val)}")
        connect_ray()
        print(describe(config, train(config, splits)))
    return 0


cli = partial(run_cli, main)  # the console script `styleid-train` (pyproject.toml)

if __name__ == "__main__":
    cli()
