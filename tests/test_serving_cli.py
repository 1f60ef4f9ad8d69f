"""Serving a trained student: `jobs.stylize --student` and `jobs.export` as a user runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import s3fs
import torch
from PIL import Image

from student.checkpoint import save_student
from student.model import STTR, STTRConfig, build_sttr
from tests.support.cli import run_in_process, run_job


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    config = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=64, dropout=0.0)
    save_student(build_sttr(config, init="scratch"), config, str(folder / "epoch-0001"))
    return folder / "epoch-0001"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (70, 100, 3), dtype=np.uint8)).save(folder / "c.png")
    Image.fromarray(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(folder / "s.png")
    return folder / "c.png", folder / "s.png"


def test_student_stylizes_at_the_contents_aspect(checkpoint, pictures, tmp_path):
    content, style = pictures
    out = tmp_path / "out.png"
    result = run_in_process(
        "stylize",
        "--student",
        str(checkpoint),
        "--content",
        str(content),
        "--style",
        str(style),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (100, 70)


def test_a_folder_of_contents_is_stylized_in_one_call(checkpoint, pictures, tmp_path):
    content, style = pictures
    (tmp_path / "in" / "more").mkdir(parents=True)
    shutil.copy(content, tmp_path / "in" / "a.png")
    Image.open(content).crop((0, 0, 40, 30)).save(tmp_path / "in" / "more" / "b.jpg")
    out = tmp_path / "styled"
    args = ["--student", str(checkpoint), "--style", str(style), "--precision", "fp32"]
    result = run_job("stylize", *args, "--content", str(tmp_path / "in"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "student (fp32): 100%" in result.stderr and "2/2" in result.stderr  # progress bar
    assert "wrote 2 images to" in result.stdout
    sizes = {}
    for name in ("a.png", "b.png"):
        with Image.open(out / name) as image:
            sizes[name] = image.size
    assert sizes == {"a.png": (100, 70), "b.png": (40, 30)}
    single = tmp_path / "single.png"
    alone = run_in_process("stylize", *args, "--content", str(content), "--out", str(single))
    assert alone.returncode == 0, alone.stderr
    with Image.open(single) as one, Image.open(out / "a.png") as in_folder:
        assert np.array_equal(np.asarray(one), np.asarray(in_folder))


def test_a_folder_encodes_its_style_once(checkpoint, pictures, tmp_path, monkeypatch):
    content, style = pictures
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(content, tmp_path / "in" / name)
    encoded = []
    original = STTR.encode_style
    monkeypatch.setattr(STTR, "encode_style", lambda *a: encoded.append(1) or original(*a))
    args = ["--student", str(checkpoint), "--style", str(style), "--out", str(tmp_path / "o")]
    result = run_in_process("stylize", *args, "--content", str(tmp_path / "in"))
    assert result.returncode == 0, result.stderr
    assert "wrote 3 images to" in result.stdout
    assert encoded == [1]


def test_unreadable_contents_of_a_folder_are_named_and_the_rest_are_written(
    checkpoint, pictures, tmp_path
):
    content, style = pictures
    (tmp_path / "in").mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(content, tmp_path / "in" / name)
    for name in ("b.png", "d.jpg"):
        (tmp_path / "in" / name).write_bytes(b"not an image")
    out = tmp_path / "styled"
    args = ["--student", str(checkpoint), "--style", str(style), "--out", str(out)]
    result = run_in_process("stylize", *args, "--content", str(tmp_path / "in"))
    assert result.returncode == 2
    lines = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith("student (")]
    assert lines == [
        f"error: 2 of 4 contents could not be read (the others are in {out}): "
        f"{tmp_path / 'in' / 'b.png'}: not a readable image; also d.jpg"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_export_writes_an_onnx_graph_that_matches_pytorch(checkpoint, tmp_path):
    out = tmp_path / "sttr.onnx"
    result = run_job(
        "export",
        "--student",
        str(checkpoint),
        "--onnx",
        str(out),
        "--example-size",
        "64",
        "--check-sizes",
        "64x64",
        "96x128",
    )
    assert result.returncode == 0, result.stderr
    assert "max |diff|" in result.stdout and out.stat().st_size > 1_000_000


def test_export_writes_to_object_storage_with_the_storage_options(checkpoint, s3_bucket):
    """The graph goes to a store of its own endpoint, through the command's storage options."""
    url, options = s3_bucket
    endpoint = options["client_kwargs"]["endpoint_url"]
    flags = [f"--storage-option={k}={options[k]}" for k in ("key", "secret")]
    flags += [f"--storage-option=client_kwargs.endpoint_url={endpoint}"]
    args = ["--student", str(checkpoint), "--onnx", f"{url}/onnx/sttr.onnx", *flags]
    result = run_in_process("export", *args, "--example-size", "64", "--check-sizes", "64x64")
    assert result.returncode == 0, result.stderr
    graph = onnx.load_from_string(s3fs.S3FileSystem(**options).cat_file(f"{url}/onnx/sttr.onnx"))
    assert [i.name for i in graph.graph.input] == ["content", "style"]


@pytest.mark.parametrize("module", ["stylize", "export"])
def test_a_wrong_checkpoint_path_is_one_clear_line(module, pictures, tmp_path):
    """In a new interpreter, unlike the other refusals of these commands: nothing printed while
    torch, the student or the teacher's modules are imported comes before the one line."""
    content, style = pictures
    args = {
        "stylize": [
            "--content",
            str(content),
            "--style",
            str(style),
            "--out",
            str(tmp_path / "o.png"),
        ],
        "export": ["--onnx", str(tmp_path / "o.onnx")],
    }[module]
    result = run_job(module, "--student", str(tmp_path / "missing"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
