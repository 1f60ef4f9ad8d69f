"""`jobs.train` when a run cannot or need not go on: a damaged checkpoint or Ray Train record, a
finished run, missing manifest parts. Each ends at once with one clear line, without retries."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.synthetic_run import write_synthetic_run
from common.errors import UserError
from common.manifest import manifest_key
from common.run_info import write_run_info
from common.storage import Storage
from jobs.train import train, validate
from student.dataset import read_splits
from student.train_config import TrainConfig
from student.train_loop import METRICS_FILE, STATE_FILE, finished
from tests.support.cli import run_in_process, run_job
from tests.support.train_helpers import SIZE, SMALL_MODEL, fit, history, small_config, snapshot

NAME = "done"


@pytest.fixture(scope="module")
def finished_run(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    """A run that trained all its epochs (one worker, two epochs: quick)."""
    root = tmp_path_factory.mktemp("finished")
    write_synthetic_run(root, n_content=3, n_style=3, size=SIZE)
    config = small_config(str(root), NAME, workers=1, epochs=2)
    fit(config)
    return config


def copy_run(config: TrainConfig, tmp_path: Path) -> TrainConfig:
    """The same run in a folder of its own to damage (Ray Train's record of a run names its
    checkpoint folders relative to the run folder, so the copy resumes from its own)."""
    shutil.copytree(config.data, tmp_path / "run")
    return replace(config, data=str(tmp_path / "run"))


def cli_args(config: TrainConfig, epochs: int) -> list[str]:
    """The command line of `config` (see `small_config`) with another epoch count."""
    assert config.model == SMALL_MODEL
    return [
        *("--data", config.data, "--name", config.name, "--epochs", str(epochs)),
        *("--workers", str(config.workers), "--batch-size", str(config.batch_size)),
        *("--crop-size", str(config.crop_size), "--init", config.init),
        *("--loader-workers", "0", "--lr-patience", str(config.lr_patience)),
        *("--enc-layers", "1", "--dec-layers", "1", "--dim-feedforward", "256"),
    ]


def latest_state_file(config: TrainConfig) -> Path:
    return Path(config.data) / "train" / config.name / f"epoch-{config.epochs:04d}" / STATE_FILE


def trained(config: TrainConfig) -> dict[str, tuple[bytes, int]]:
    """The run's checkpoints and metrics file (not Ray Train's own records)."""
    run = Path(config.data) / "train" / config.name
    return {k: v for k, v in snapshot(run).items() if "/epoch-" in k or k.endswith(METRICS_FILE)}


def garbage(path: Path) -> None:
    path.write_bytes(b"garbage\n")


def foreign_optimizer(path: Path) -> None:
    """The saved state with another model's optimizer in it: a valid torch file, wrong content."""
    state = torch.load(path, weights_only=True)
    state["optimizer"] = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]).state_dict()
    torch.save(state, path)


def test_a_finished_run_says_so_and_starts_nothing(finished_run: TrainConfig) -> None:
    """In a new interpreter: there, Ray would log to stderr if it were started; this process
    has it started already, by the fixture."""
    before = snapshot(Path(finished_run.data))
    result = run_job("train", *cli_args(finished_run, epochs=2))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"run '{NAME}' is already complete (epoch 2 of 2; best val_loss "
        f"{min(r['val_loss'] for r in history(finished_run)):.5f} at "
        f"{finished_run.data}/train/{NAME}/epoch-0002); nothing to do. "
        "Pass more --epochs to train it further."
    ]
    assert result.stderr == ""  # Ray was never started: it would have logged
    assert snapshot(Path(finished_run.data)) == before


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (garbage, "is not a file written by torch.save"),
        (foreign_optimizer, "is not a training state of this student (ValueError: "),
    ],
    ids=["garbage", "foreign-optimizer"],
)
def test_a_tampered_checkpoint_is_one_error_line_and_no_retry(
    finished_run: TrainConfig, tmp_path: Path, damage: Callable[[Path], None], cause: str
) -> None:
    config = copy_run(finished_run, tmp_path)
    state_file = latest_state_file(config)
    damage(state_file)
    before = snapshot(tmp_path)
    result = run_in_process("train", *cli_args(config, epochs=3))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot resume '{NAME}': {state_file} {cause}")
    assert result.stderr.endswith(
        f"; use a new --name, or delete {config.data}/train/{NAME} to start this run again\n"
    )
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stdout and "training on" not in result.stdout  # no Ray
    assert snapshot(tmp_path) == before  # no worker started, so no epoch was trained


def test_workers_that_cannot_restore_end_the_run_at_once(
    finished_run: TrainConfig, tmp_path: Path
) -> None:
    """A checkpoint damaged after the driver's check: every rank fails alike and the run ends
    with that cause, not with Ray Train restarting the worker group `max_failures` times."""
    config = copy_run(finished_run, tmp_path)
    garbage(latest_state_file(config))
    config = replace(config, workers=2, epochs=3)
    before = trained(config)
    with pytest.raises(UserError, match=f"cannot resume '{NAME}': .*is not a file written by"):
        train(config, validate(config))
    assert trained(config) == before


def test_a_deleted_checkpoint_folder_is_one_error_line(
    finished_run: TrainConfig, tmp_path: Path
) -> None:
    """Ray Train's record of the run still names the folder: resuming cannot work."""
    config = copy_run(finished_run, tmp_path)
    shutil.rmtree(latest_state_file(config).parent)
    result = run_in_process("train", *cli_args(config, epochs=3))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: cannot resume '{NAME}': Ray Train's record of the run cannot be used ("
    )
    assert len(result.stderr.splitlines()) == 1
    assert "training on" not in result.stdout  # refused before Ray


def generated_run(root: Path) -> Storage:
    """The synthetic run (3 parts, 9 pairs) with the run.json `jobs.generate` writes."""
    storage = write_synthetic_run(root, n_content=3, n_style=3, size=SIZE)
    write_run_info(storage, "generate", {}, teacher_hash="t0", pairs=9, tiles=3)
    return storage


def test_a_deleted_manifest_part_is_a_warning_with_the_pairs_it_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = generated_run(tmp_path)
    with caplog.at_level(logging.WARNING):
        read_splits(storage)
    assert not caplog.records  # everything planned is listed
    (tmp_path / manifest_key("t0", "0001")).unlink()
    with caplog.at_level(logging.WARNING):
        splits = read_splits(storage)
    assert (len(splits.train), len(splits.val)) == (2, 1)
    assert [record.getMessage() for record in caplog.records] == [
        f"run.json planned 9 pairs, {tmp_path}/manifests lists 6: 3 planned pairs have no "
        "manifest line (generation unfinished, parts deleted, or unusable inputs: 0 failure "
        f"records under {tmp_path}/failures; run jobs.generate again with the same options to "
        "finish or retry them); training on the listed pairs only"
    ]


@pytest.mark.parametrize("teacher_hash", [None, "t0"])
def test_a_root_without_manifests_says_to_run_generation(
    tmp_path: Path, teacher_hash: str | None
) -> None:
    generated_run(tmp_path)
    for part in (tmp_path / "manifests" / "t0").iterdir():
        part.unlink()
    hash_args = [] if teacher_hash is None else ["--teacher-hash", teacher_hash]
    result = run_in_process("train", "--data", str(tmp_path), "--name", "n", *hash_args)
    assert result.returncode == 2
    folder = f"{tmp_path}/manifests" + ("" if teacher_hash is None else f"/{teacher_hash}")
    assert result.stderr == (
        f"error: no manifests under {folder}: generation has not run or not finished a tile "
        "yet (run jobs.generate with --out set to this root)\n"
    )


@pytest.mark.parametrize(
    ("epoch", "early_stop", "epochs", "patience", "done"),
    [
        (4, [False, 0], 4, 3, True),  # every epoch run
        (4, [False, 0], 6, 3, False),  # more --epochs asked for
        (3, [True, 3], 6, 3, True),  # the early stop was reached
        (3, [True, 3], 6, 4, False),  # a larger --patience trains on
    ],
)
def test_a_run_is_finished_when_its_loop_would_not_run(
    epoch: int, early_stop: list, epochs: int, patience: int, done: bool
) -> None:
    state = {"epoch": epoch, "early_stop": early_stop}
    config = small_config("unused", NAME, epochs=epochs, patience=patience)
    assert finished(state, config) is done


def test_a_diverging_run_stops_with_one_line_and_keeps_no_nan_checkpoint(
    finished_run: TrainConfig,
) -> None:
    """An lr that blows the weights up: the first non-finite loss ends the run with a line
    saying what to try, instead of an early stop on NaN or a retry of the worker group."""
    config = replace(finished_run, name="diverges", lr=1e30, epochs=3, workers=1)
    with pytest.raises(UserError) as error:
        train(config, validate(config))
    message = str(error.value)
    assert message.startswith("training diverged in epoch 1 (train_loss ")
    assert message.endswith("; nothing was kept; try a lower --lr (now 1e+30)")
    run = Path(config.data) / "train" / config.name
    assert not list(run.glob("epoch-*")) and not (run / METRICS_FILE).exists()
