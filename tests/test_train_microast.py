"""`python -m jobs.train --arch microast`: the same Ray Train DDP loop, checkpoints and resume
as STTR, with the student reading and writing its own pixel space.

Its resume is the one a full disk leaves: a damaged latest checkpoint resumes from the newest
kept one that can be read, and says so (instead of offering only a new --name or deleting the
run); other options than the run started with are named in one line before Ray starts, since
the run goes on with its checkpoint's model, optimiser and lr schedule. One run, trained twice,
serves every test: two epochs at --lr 1e-4 keeping two checkpoints, then the latest checkpoint
is damaged and the same --name is asked for three epochs at --lr 1e-3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.synthetic_run import write_synthetic_run
from common.storage import Storage
from student.checkpoint import load_student, resolve_checkpoint
from student.dataset import TripleDataset, collate_triples, read_splits
from student.image_space import imagenet_normalize
from student.losses import build_loss
from student.microast import MicroAST, MicroASTConfig
from student.run_record import read_run_record
from student.train_loop import STATE_FILE
from tests.support.cli import run_in_process
from tests.support.train_helpers import SIZE, snapshot

ARGS = ["--workers", "2", "--batch-size", "2", "--crop-size", str(SIZE), "--loader-workers", "0"]


def train(data: Path, *flags: str) -> Any:
    return run_in_process("train", "--data", str(data), "--name", "micro", *ARGS, *flags)


def history(data: Path) -> list[dict[str, Any]]:
    text = (data / "train" / "micro" / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def validation_loss(model: torch.nn.Module, data: Path) -> float:
    """The l1 loss over the val split, as the workers compute it: the student in [0, 1], the
    loss in ImageNet-normalized space."""
    storage = Storage(str(data))
    dataset = TripleDataset(storage, read_splits(storage).val, SIZE, train=False)
    batch = collate_triples([dataset[index] for index in range(len(dataset))])
    with torch.no_grad():
        output = imagenet_normalize(model(batch.content, batch.style))
        return build_loss("l1", None)(output, imagenet_normalize(batch.target)).total.item()


Runs = tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def runs(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The run's data root, and what its first and its resuming command printed."""
    data = tmp_path_factory.mktemp("run")
    write_synthetic_run(data, n_content=3, n_style=3, size=SIZE)  # 4 train, 2 val pairs
    micro = ["--arch", "microast", "--init", "authors", "--keep-checkpoints", "2"]
    first = train(data, *micro, "--lr", "1e-4", "--epochs", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    (data / "train" / "micro" / "epoch-0002" / STATE_FILE).write_bytes(b"cut short by a full disk")
    again = train(data, *micro, "--lr", "1e-3", "--epochs", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    return data, first, again


def test_microast_trains_with_ddp_and_resumes(runs: Runs) -> None:
    data, _, _ = runs
    records = history(data)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    assert [record["resumed_from"] for record in records] == [0, 1, 1]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    state = torch.load(data / "train" / "micro" / "epoch-0003" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 3
    assert [entry["epoch"] for entry in state["history"]] == [1, 2, 3]


def test_a_damaged_latest_checkpoint_resumes_from_the_newest_readable_one(runs: Runs) -> None:
    data, _, again = runs
    run = data / "train" / "micro"
    notes = [line for line in again.stdout.splitlines() if "the latest checkpoint" in line]
    assert len(notes) == 1, again.stdout
    assert notes[0].startswith(f"the latest checkpoint cannot be used ({run / 'epoch-0002'}")
    assert notes[0].endswith(
        f"resuming from {run / 'epoch-0001'}, the newest kept checkpoint that can"
    )
    # epoch 2, trained again, has a folder of its own: Ray Train's record still listed the
    # damaged one, and pruning it would have deleted a new epoch 2 written into its folder
    record = read_run_record(Storage(str(run)))
    assert record is not None and record.checkpoint is not None
    kept = [checkpoint.path for checkpoint, _ in record.best_checkpoints]
    assert record.checkpoint.path == str(run / "epoch-0003") and str(run / "epoch-0002.1") in kept
    assert all((Path(path) / STATE_FILE).exists() for path in kept)
    assert not (run / "epoch-0002").exists()  # the damaged checkpoint, pruned by Ray Train


def test_resuming_a_name_with_another_lr_says_so(runs: Runs) -> None:
    _, first, again = runs
    assert "note:" not in first.stdout
    notes = [line for line in again.stdout.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: run 'micro' resumes with the settings it started with (--lr 0.0001), not --lr "
        "0.001: its checkpoint's model, optimiser and lr schedule go on; pass a new --name to "
        "train with these"
    ]
    # said before Ray Train started on the next epoch
    lines = again.stdout.splitlines()
    assert lines.index(notes[0]) < next(
        i for i, x in enumerate(lines) if x.startswith("training on")
    )


def test_its_checkpoint_is_a_microast_that_reproduces_the_validation_loss(runs: Runs) -> None:
    data, _, _ = runs
    folder = resolve_checkpoint(str(data / "train" / "micro"))
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config == {"arch": "microast", "alpha": 1.0}
    model, model_config = load_student(folder)
    assert isinstance(model, MicroAST) and model_config == MicroASTConfig()
    epoch = torch.load(Path(folder) / STATE_FILE, weights_only=True)["epoch"]
    measured = history(data)[epoch - 1]["val_loss"]
    assert validation_loss(model, data) == pytest.approx(measured, rel=1e-4)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--arch", "microast", "--init", "imagenet"],
            "--init imagenet is not for --arch microast",
        ),
        (["--init", "authors"], "--init authors is not for --arch sttr"),
        (["--arch", "microast", "--init", "nowhere"], "no such file: "),
    ],
)
def test_an_init_that_does_not_fit_the_arch_is_one_line(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    write_synthetic_run(tmp_path, n_content=3, n_style=3, size=SIZE)
    before = snapshot(tmp_path)
    if "nowhere" in flags:
        flags = [*flags[:-1], str(tmp_path / "nowhere")]
    result = train(tmp_path, *flags)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert snapshot(tmp_path) == before
