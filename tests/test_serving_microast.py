"""Serving a MicroAST run as an STTR one: `jobs.stylize --student` (an image or a folder) and
`jobs.export`, the architecture read from the checkpoint with no flag."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image
from torchvision.models import alexnet

from benchmarks.synthetic_run import write_synthetic_run
from common.images import to_tensor
from common.run_info import write_run_info
from jobs import evaluate
from student.checkpoint import save_student
from student.choices import AUTHORS_MICROAST
from student.export import check_onnx, export_onnx
from student.inference import stylize
from student.microast import MicroAST, MicroASTConfig, build_microast
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from tests.support.cli import run_in_process
from tests.support.train_helpers import write_seeded_vgg19

ROOT = Path(__file__).resolve().parents[1]
ONNX_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model() -> MicroAST:
    return build_microast(MicroASTConfig(), "authors").eval()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, model: MicroAST) -> Path:
    """A run folder whose only checkpoint holds the authors' MicroAST."""
    folder = tmp_path_factory.mktemp("student") / "epoch-0001"
    save_student(model, MicroASTConfig(), str(folder))
    return folder


def read(path: Path) -> torch.Tensor:
    return to_tensor(Image.open(path).convert("RGB"))


def test_stylize_an_image_and_a_folder_with_a_microast_checkpoint(
    run: Path, model: MicroAST, tmp_path: Path
) -> None:
    style = ROOT / "samples" / "styles" / "03.png"
    (tmp_path / "in").mkdir()
    for name in ("00.png", "07.png"):
        shutil.copy(ROOT / "samples" / "content" / name, tmp_path / "in" / name)
    one = ["--student", str(run), "--style", str(style), "--precision", "fp32"]
    result = run_in_process(
        "stylize",
        *one,
        "--content",
        str(tmp_path / "in" / "00.png"),
        "--out",
        str(tmp_path / "one.png"),
    )
    assert result.returncode == 0, result.stderr
    expected = stylize(model, read(tmp_path / "in" / "00.png"), read(style))
    assert (read(tmp_path / "one.png") - expected).abs().max() <= 1 / 255 + 1e-6  # PNG rounding
    result = run_in_process(
        "stylize", *one, "--content", str(tmp_path / "in"), "--out", str(tmp_path / "many")
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["00.png", "07.png"]
    assert torch.equal(read(tmp_path / "many" / "00.png"), read(tmp_path / "one.png"))
    # the same weights by the name `jobs.serve` and `jobs.evaluate` take
    one[1] = AUTHORS_MICROAST
    content = ["--content", str(tmp_path / "in" / "00.png")]
    result = run_in_process("stylize", *one, *content, "--out", str(tmp_path / "named.png"))
    assert result.returncode == 0, result.stderr
    assert torch.equal(read(tmp_path / "named.png"), read(tmp_path / "one.png"))


def test_onnx_export_of_microast_matches_pytorch(model: MicroAST) -> None:
    """Sides multiples of 4, content and style of different sizes, and metadata that tells a
    device runtime the input space."""
    graph = export_onnx(model, example_size=64)
    assert check_onnx(model, graph, sizes=[(64, 64), (52, 92)]) < ONNX_TOLERANCE
    props = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
    assert props["arch"] == "microast" and props["pixel_space"] == "unit"
    assert props["size_multiple"] == "4"
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    content = read(ROOT / "samples" / "content" / "02.png")[None]
    style = read(ROOT / "samples" / "styles" / "06.png")[None]
    got = session.run(["stylized"], {"content": content.numpy(), "style": style.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - model(content, style).numpy()).max() < ONNX_TOLERANCE


def test_jobs_export_takes_a_microast_run_or_the_authors_weights_by_name(
    run: Path, tmp_path: Path
) -> None:
    """Both name the same weights, so both give the same graph; the tracer's notes on what it
    could not fold stay off the console."""
    for source, out in ((str(run), tmp_path / "run.onnx"), (AUTHORS_MICROAST, tmp_path / "n.onnx")):
        result = run_in_process(
            "export", "--student", source, "--onnx", str(out), "--example-size", "64"
        )
        assert result.returncode == 0, result.stderr
        assert "ONNX Runtime vs PyTorch" in result.stdout and result.stderr == ""
    props = {p.key: p.value for p in onnx.load(tmp_path / "n.onnx").metadata_props}
    assert props["arch"] == "microast"
    assert (tmp_path / "n.onnx").read_bytes() == (tmp_path / "run.onnx").read_bytes()


def test_jobs_evaluate_measures_a_microast_run(tmp_path: Path, run: Path) -> None:
    """The golden set's measures and contact sheet for a MicroAST checkpoint, with no flag
    naming its architecture."""
    storage = write_synthetic_run(tmp_path / "data", n_content=2, n_style=2, size=64)
    teacher = TeacherOptions(styleid=StyleIDConfig(steps=2, resolution=64)).chosen()
    write_run_info(storage, "generate", {"teacher": asdict(teacher)})
    torch.manual_seed(0)
    features = {f"features.{k}": v for k, v in alexnet().features.state_dict().items()}
    torch.save(features, tmp_path / "alexnet.pth")
    vgg = write_seeded_vgg19(tmp_path / "vgg19.pth")
    args = ["--data", str(tmp_path / "data"), "--student", str(run), "--name", "micro"]
    args += ["--vgg-weights", vgg, "--lpips-weights", str(tmp_path / "alexnet.pth")]
    assert evaluate.main(args) == 0
    folder = tmp_path / "data" / "eval" / "micro"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["student_arch"] == "microast"
    assert metrics["student_parameters"] == sum(
        p.numel() for p in MicroAST(MicroASTConfig()).parameters()
    )
    assert (folder / "contact_sheet.png").exists()
