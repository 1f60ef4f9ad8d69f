"""The README's main job end to end (tiny teacher, small sizes), and its bad inputs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from common.manifest import read_manifest
from common.storage import Storage
from tests.cli import ROOT, run_job

SAMPLES = ROOT / "samples"


@pytest.mark.ray
def test_main_job_writes_targets_checkpoint_metrics_and_pictures(tmp_path):
    out = tmp_path / "run"
    flags = [
        "--resolution",
        "64",
        "--steps",
        "3",
        "--epochs",
        "1",
        "--student-layers",
        "1",
        "--crop-size",
        "64",
    ]
    result = run_job("pipeline", "--out", str(out), *flags, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "contact_sheet.png" in result.stdout
    storage = Storage(str(out))
    lines = read_manifest(storage)
    assert len(lines) == 12 * 8 + 2 * 2  # one recipe combination + the golden set
    assert {line.split for line in lines} == {"train", "val", "golden"}
    assert sorted(k for k in storage.list("targets")) == sorted(line.target for line in lines)
    assert storage.exists("train/demo/epoch-0001/model.safetensors")
    metrics = json.loads(storage.read_bytes("eval/golden/metrics.json"))
    assert len(metrics["pairs"]) == 4
    assert all(math.isfinite(v) for v in metrics["mean"].values())
    assert metrics["student_parameters"] > 0 and metrics["teacher_parameters"] > 0
    with Image.open(out / "eval/golden/contact_sheet.png") as sheet:
        # 2 golden styles x (teacher, student) columns of 128 px thumbs, 2 contents + a header row
        assert sheet.size == (8 + 128 + 8 + 2 * (2 * 128 + 8 + 8), 8 + 3 * (128 + 18 + 8))
    with Image.open(out / "eval/golden/curves.png") as curves:
        assert curves.size == (520, 600)


def copy_samples(tmp_path: Path) -> Path:
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLES, samples, ignore=shutil.ignore_patterns("*.py", "*.md"))
    return samples


def test_an_empty_content_folder_is_one_clear_line(tmp_path):
    samples = copy_samples(tmp_path)
    for image in (samples / "content").iterdir():
        image.unlink()
    result = run_job("pipeline", "--samples", str(samples), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: content input {str(samples / 'content')!r} holds no images"
    )
    assert not (tmp_path / "run").exists()


def test_a_golden_image_among_the_training_inputs_is_refused(tmp_path):
    samples = copy_samples(tmp_path)
    shutil.copy(samples / "golden" / "styles" / "01.png", samples / "styles" / "renamed.png")
    result = run_job(
        "generate",
        "--content",
        str(samples / "content"),
        "--styles",
        str(samples / "styles"),
        "--golden-content",
        str(samples / "golden/content"),
        "--golden-styles",
        str(samples / "golden/styles"),
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training input ") and "renamed.png is a golden image" in last
    assert not (tmp_path / "run" / "targets").exists()


def test_a_missing_checkpoint_is_one_clear_line(tmp_path):
    result = run_job("evaluate", "--data", str(tmp_path), "--student", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "error: " in result.stderr and "Traceback" not in result.stderr
