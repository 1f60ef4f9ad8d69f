"""`jobs.train` and `jobs.evaluate` on a machine with no internet and no torchvision weights:
what cannot work ends with one `error:` line before Ray or any evaluation starts. Both read
TORCH_HOME and HF_HUB_OFFLINE when they look for weights, not at import, so most tests run the
command in this process; one per command runs it in a new interpreter."""

from __future__ import annotations

from pathlib import Path
from subprocess import CompletedProcess

import pytest
import torch

from benchmarks.synthetic_run import write_synthetic_run
from student.checkpoint import save_student
from student.model import STTRConfig, build_sttr
from tests.support.cli import run_in_process, run_job


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_synthetic_run(root, n_content=3, n_style=2, size=64)
    return root


def train_args(data: Path, *flags: str) -> list[str]:
    """`jobs.train`'s command line for a small run on `data`, with `flags` added."""
    return ["--data", str(data), "--name", "n", "--crop-size", "64", *flags]


@pytest.fixture(autouse=True)
def air_gapped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What the commands inherit: an empty torch hub cache and downloads off."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def one_error_line(result: CompletedProcess) -> str:
    """The command's only stderr line, which must be an `error:` line, without the prefix."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "training on" not in result.stdout  # printed after validation, before Ray starts
    return lines[0].removeprefix("error: ")


def test_gram_loss_without_vgg19_stops_before_ray(data: Path, air_gapped: Path) -> None:
    result = run_job("train", *train_args(data, "--init", "scratch", "--loss", "l2"))
    message = one_error_line(result)
    assert message.startswith("no VGG19 weights: pass --vgg-weights PATH_OR_URL or put ")
    assert f"vgg19-dcbb9e9d.pth in {air_gapped}" in message
    assert message.endswith("or --vgg-weights random to use a random one")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--loss", "l3", "--vgg-weights"), "does not hold VGG19 weights: it has no features."),
        (("--init", "imagenet", "--backbone-weights"), "as ResNet-50 weights: "),
    ],
)
def test_weights_that_do_not_fit_are_one_line(
    data: Path, tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    wrong = tmp_path / "wrong.pth"
    if "--vgg-weights" in flags:
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong)  # a ResNet's first layer
    else:
        wrong.write_bytes(b"<html>a proxy's login page</html>")
    line = one_error_line(run_in_process("train", *train_args(data, *flags, str(wrong))))
    assert str(wrong) in line and message in line


def test_evaluation_without_vgg19_is_one_line(data: Path, tmp_path: Path) -> None:
    config = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=64)
    save_student(build_sttr(config, init="scratch"), config, str(tmp_path / "epoch-0001"))
    result = run_job("evaluate", "--data", str(data), "--student", str(tmp_path / "epoch-0001"))
    assert one_error_line(result).startswith("no VGG19 weights: pass --vgg-weights")
    assert not (data / "eval").exists()
