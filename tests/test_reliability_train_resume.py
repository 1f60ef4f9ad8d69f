"""A damaged latest checkpoint: the run resumes from the newest kept checkpoint that can be
read, and says so, instead of offering only a new --name or deleting the run."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.synthetic_run import write_synthetic_run
from student.train_loop import STATE_FILE
from tests.support.cli import run_in_process
from tests.support.train_helpers import SIZE

SMALL = ["--enc-layers", "1", "--dec-layers", "1", "--dim-feedforward", "256", "--dropout", "0"]


def train_args(data: Path, epochs: int) -> list[str]:
    return [
        *("--data", str(data), "--name", "damaged", "--init", "scratch", "--workers", "1"),
        *("--batch-size", "2", "--crop-size", str(SIZE), "--loader-workers", "0", *SMALL),
        *("--keep-checkpoints", "2", "--epochs", str(epochs)),
    ]


def test_a_damaged_latest_checkpoint_resumes_from_the_newest_readable_one(ray_cluster, tmp_path):
    data = tmp_path / "run"
    write_synthetic_run(data, n_content=3, n_style=3, size=SIZE)
    first = run_in_process("train", *train_args(data, 2))
    assert first.returncode == 0, first.stderr
    run = data / "train" / "damaged"
    (run / "epoch-0002" / STATE_FILE).write_bytes(b"cut short by a full disk")

    again = run_in_process("train", *train_args(data, 3))

    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stdout.splitlines() if "the latest checkpoint" in line]
    assert len(notes) == 1, again.stdout
    assert notes[0].startswith(f"the latest checkpoint cannot be used ({run / 'epoch-0002'}")
    assert notes[0].endswith(
        f"resuming from {run / 'epoch-0001'}, the newest kept checkpoint that can"
    )
    state = torch.load(run / "epoch-0003" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 3
    assert [entry["epoch"] for entry in state["history"]] == [1, 2, 3]
