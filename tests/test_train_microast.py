"""`python -m jobs.train --arch microast`: the same Ray Train DDP loop, checkpoints and resume
as STTR, with the student reading and writing its own pixel space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.synthetic_run import write_synthetic_run
from student.checkpoint import load_student, resolve_checkpoint
from student.dataset import TripleDataset, collate_triples, read_splits
from student.image_space import imagenet_normalize
from student.losses import build_loss
from student.microast import MicroAST, MicroASTConfig
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
    from common.storage import Storage

    storage = Storage(str(data))
    dataset = TripleDataset(storage, read_splits(storage).val, SIZE, train=False)
    batch = collate_triples([dataset[index] for index in range(len(dataset))])
    with torch.no_grad():
        output = imagenet_normalize(model(batch.content, batch.style))
        return build_loss("l1", None)(output, imagenet_normalize(batch.target)).total.item()


@pytest.fixture(scope="module")
def runs(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs from the authors' weights on 2 DDP workers, then the same name to 3 epochs."""
    data = tmp_path_factory.mktemp("run")
    write_synthetic_run(data, n_content=3, n_style=3, size=SIZE)  # 4 train, 2 val pairs
    for epochs in ("2", "3"):
        result = train(data, "--arch", "microast", "--init", "authors", "--lr", "1e-4",
                       "--epochs", epochs)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    return data


def test_microast_trains_with_ddp_and_resumes(runs: Path) -> None:
    records = history(runs)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    assert [record["resumed_from"] for record in records] == [0, 0, 2]
    assert records[-1]["train_loss"] < records[0]["train_loss"]


def test_its_checkpoint_is_a_microast_that_reproduces_the_validation_loss(runs: Path) -> None:
    folder = resolve_checkpoint(str(runs / "train" / "micro"))
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config == {"arch": "microast", "alpha": 1.0}
    model, model_config = load_student(folder)
    assert isinstance(model, MicroAST) and model_config == MicroASTConfig()
    epoch = int(Path(folder).name.removeprefix("epoch-"))
    measured = history(runs)[epoch - 1]["val_loss"]
    assert validation_loss(model, runs) == pytest.approx(measured, rel=1e-4)


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
