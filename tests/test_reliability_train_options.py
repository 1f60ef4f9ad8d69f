"""The same --name again with other options: one line, before Ray starts, says that the run
resumes with the settings it started with (its checkpoint's model, optimiser and lr schedule)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.synthetic_run import write_synthetic_run
from tests.support.cli import run_in_process
from tests.support.train_helpers import SIZE

SMALL = ["--enc-layers", "1", "--dec-layers", "1", "--dim-feedforward", "256", "--dropout", "0"]


def train_args(data: Path, *extra: str) -> list[str]:
    return [
        *("--data", str(data), "--name", "again", "--init", "scratch", "--workers", "1"),
        *("--batch-size", "2", "--crop-size", str(SIZE), "--loader-workers", "0", *SMALL),
        *extra,
    ]


def test_resuming_a_name_with_another_lr_says_so(ray_cluster, tmp_path):
    data = tmp_path / "run"
    write_synthetic_run(data, n_content=3, n_style=3, size=SIZE)
    first = run_in_process("train", *train_args(data, "--epochs", "1", "--lr", "1e-4"))
    assert first.returncode == 0, first.stderr
    assert "note:" not in first.stdout

    again = run_in_process("train", *train_args(data, "--epochs", "2", "--lr", "0.001"))
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: run 'again' resumes with the settings it started with (--lr 0.0001), not --lr "
        "0.001: its checkpoint's model, optimiser and lr schedule go on; pass a new --name to "
        "train with these"
    ]
    # said before Ray Train started on the second epoch
    lines = again.stdout.splitlines()
    assert lines.index(notes[0]) < next(
        i for i, x in enumerate(lines) if x.startswith("training on")
    )
