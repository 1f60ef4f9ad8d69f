"""Train the STTR student on the teacher's targets with Ray Train (DDP, one worker per GPU).

    python -m jobs.train --data s3://bucket/run --name l1 --workers 4 --gpu
    ray job submit --working-dir . -- python -m jobs.train --data s3://bucket/run --name l1 ...

Checkpoints and metrics go to <data>/train/<name>/; the same --name again resumes the run.
With RAY_ADDRESS set (`ray job submit` sets it) the job joins that cluster, else it starts a
local one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

import pyarrow.fs
from fsspec.implementations.local import LocalFileSystem
from ray.train import CheckpointConfig, FailureConfig, Result, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from common.cli import run_cli
from common.errors import UserError
from common.ray_connect import connect_ray
from student.dataset import Splits, read_splits, teacher_resolution
from student.train_config import TrainConfig, check_init, config_from_args
from student.train_loop import metrics_key, train_loop_per_worker


def validate(config: TrainConfig) -> Splits:
    """Every check that needs I/O, before Ray starts: data, manifests, `--init`, crop size."""
    storage = config.storage()
    splits = read_splits(storage, config.teacher_hash)
    check_init(config)
    size = teacher_resolution(storage, splits.train[0])
    if size is not None and size < config.crop_size:
        raise UserError(f"--crop-size {config.crop_size}: the targets are only {size}px")
    return splits


def run_config(config: TrainConfig) -> RunConfig:
    """Ray Train writes to <data>/train/<name>/ through the same filesystem as the data."""
    storage = config.storage()
    local = isinstance(storage.fs, LocalFileSystem)
    return RunConfig(
        name=config.name,
        storage_path=storage.path("train"),
        storage_filesystem=None
        if local
        else pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(storage.fs)),
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
    splits = validate(config)
    print(f"training on {len(splits.train)} pairs, validating on {len(splits.val)}")
    connect_ray()
    print(describe(config, train(config, splits)))
    return 0


if __name__ == "__main__":
    run_cli(main)
