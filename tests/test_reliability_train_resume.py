"""Resuming a run by its --name: a damaged latest checkpoint resumes from the newest kept one
that can be read, and says so (instead of offering only a new --name or deleting the run);
other options than the run started with are named in one line before Ray starts, since the
run goes on with its checkpoint's model, optimiser and lr schedule.

One run, trained twice, serves both: two epochs at --lr 1e-4 keeping two checkpoints, then
the latest checkpoint is damaged and the same --name is asked for three epochs at --lr 1e-3."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.synthetic_run import write_synthetic_run
from student.train_loop import STATE_FILE
from tests.support.cli import run_in_process
from tests.support.train_helpers import SIZE

SMALL = ["--enc-layers", "1", "--dec-layers", "1", "--dim-feedforward", "256", "--dropout", "0"]


def train_args(data: Path, epochs: int, lr: str) -> list[str]:
    return [
        *("--data", str(data), "--name", "again", "--init", "scratch", "--workers", "1"),
        *("--batch-size", "2", "--crop-size", str(SIZE), "--loader-workers", "0", *SMALL),
        *("--keep-checkpoints", "2", "--epochs", str(epochs), "--lr", lr),
    ]


@pytest.fixture(scope="module")
def resumed(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The run folder, and what the first and the resuming command printed."""
    data = tmp_path_factory.mktemp("run")
    write_synthetic_run(data, n_content=3, n_style=3, size=SIZE)
    first = run_in_process("train", *train_args(data, 2, "1e-4"))
    assert first.returncode == 0, first.stderr
    run = data / "train" / "again"
    (run / "epoch-0002" / STATE_FILE).write_bytes(b"cut short by a full disk")
    again = run_in_process("train", *train_args(data, 3, "0.001"))
    assert again.returncode == 0, again.stderr
    return run, first, again


def test_a_damaged_latest_checkpoint_resumes_from_the_newest_readable_one(resumed):
    run, _, again = resumed
    notes = [line for line in again.stdout.splitlines() if "the latest checkpoint" in line]
    assert len(notes) == 1, again.stdout
    assert notes[0].startswith(f"the latest checkpoint cannot be used ({run / 'epoch-0002'}")
    assert notes[0].endswith(
        f"resuming from {run / 'epoch-0001'}, the newest kept checkpoint that can"
    )
    state = torch.load(run / "epoch-0003" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 3
    assert [entry["epoch"] for entry in state["history"]] == [1, 2, 3]


def test_resuming_a_name_with_another_lr_says_so(resumed):
    _, first, again = resumed
    assert "note:" not in first.stdout
    notes = [line for line in again.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: run 'again' resumes with the settings it started with (--lr 0.0001), not --lr "
        "0.001: its checkpoint's model, optimiser and lr schedule go on; pass a new --name to "
        "train with these"
    ]
    # said before Ray Train started on the next epoch
    lines = again.stdout.splitlines()
    assert lines.index(notes[0]) < next(
        i for i, x in enumerate(lines) if x.startswith("training on")
    )
