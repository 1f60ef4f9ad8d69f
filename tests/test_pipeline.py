"""The README's main job end to end (the stand-in teacher, small sizes), and its bad inputs;
StyleID's demo differs in its first two steps' flags (tests/test_student_teacher.py), and
tests/test_generate_job.py runs StyleID through the same service."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.synthetic_run import write_synthetic_run
from common.manifest import read_manifest
from common.storage import Storage
from tests.support.cli import ROOT, run_in_process, run_job
from tests.support.generation_helpers import check_unchanged, target_times

SAMPLES = ROOT / "samples"
# What Ray's own loggers print at INFO or WARNING in the demo; only `--verbose` shows them.
RAY_INTERNALS = (
    "Failed to query Ray Train Controller",  # every second, from Ray Train's cleaner actor
    "Requesting resources",  # Ray Train's controller
    "Checkpoint successfully created",  # Ray Train's workers
    "Reporting training result",  # Ray Train's workers, by a logger outside "ray"
    "Execution plan of Dataset",  # Ray Data's, in the driver
    "Token authentication",  # Ray's, at ray.init
)
# a line of Ray's C++ logging: "[2026-11-26 08:44:43,883 E 13995 14012] (raylet) file.cc:116: "
RAY_CPP_LOG = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] (\(\w+\) )?\w+\.cc:\d+:")


@pytest.mark.ray
def test_main_job_writes_targets_checkpoint_metrics_and_pictures(tmp_path):
    out = tmp_path / "run"
    flags = [
        "--resolution",
        "64",
        "--epochs",
        "1",
        "--crop-size",
        "64",
    ]
    result = run_job("pipeline", "--out", str(out), *flags, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "contact_sheet.png" in result.stdout
    printed = result.stdout + result.stderr
    assert "the teacher is a stand-in, the MicroAST authors' released weights" in result.stdout
    assert "epoch 1/1  train_loss" in printed  # a Ray Train worker's line reaches the user
    assert printed.count("Ray's logs: ") == 2  # generation's and training's Ray
    for internal in RAY_INTERNALS:
        assert internal not in printed
    assert len(printed.splitlines()) <= 60  # a newcomer's screen, not Ray's internals
    # nor Ray's C++ lines: the driver's core worker's (about Ray Data's actors, which may be
    # restarted), the ones streamed from Ray Train's controller; the logs keep them
    assert [line for line in printed.splitlines() if RAY_CPP_LOG.search(line)] == []
    storage = Storage(str(out))
    # what the console leaves out is in each Ray job's log file in the run
    logs = {re.sub(r"-\d{8}-\d{6}-\d+\.log$", "", k): k for k in storage.list("logs")}
    assert sorted(logs) == ["logs/generate", "logs/train-demo"]
    assert "Execution plan of Dataset" in (out / logs["logs/generate"]).read_text()
    assert "Started a local Ray instance" in (out / logs["logs/train-demo"]).read_text()
    assert "core_worker.cc" in (out / logs["logs/generate"]).read_text()
    lines = read_manifest(storage)
    assert len(lines) == 12 * 8 + 2 * 2  # one recipe combination + the golden set
    assert {line.split for line in lines} == {"train", "val", "golden"}
    assert sorted(k for k in storage.list("targets")) == sorted(line.target for line in lines)
    assert storage.exists("train/demo/epoch-0001/model.safetensors")
    metrics = json.loads(storage.read_bytes("eval/golden/metrics.json"))
    assert len(metrics["pairs"]) == 4
    for side in ("teacher", "student"):  # side by side, every figure measured
        figures = {"lpips_content", "cfsd", "content_loss", "style_loss", "seconds"}
        assert set(metrics["mean"][side]) == figures
        assert all(math.isfinite(v) for v in metrics["mean"][side].values())
    assert set(metrics["mean"]["student_vs_teacher"]) == {"psnr", "ssim", "lpips"}
    assert set(metrics["pairs"][0]) == {"content", "style", *metrics["mean"]}  # no LSAST
    assert "also_teacher" not in metrics and "lsast" not in metrics["notes"]
    # the demo measures with random networks, and says so; 4 pairs are too few for FID
    assert metrics["paper_comparable"] is False
    assert metrics["weights"]["VGG19"] == metrics["weights"]["AlexNet (LPIPS)"] == "random"
    assert metrics["set"]["fid"] is None and "golden set has 4" in metrics["set"]["fid_note"]
    assert metrics["student_arch"] == "microast"  # from scratch, not the teacher's weights
    assert metrics["teacher_model"] == "microast-authors"
    assert metrics["teacher_parameters"] == metrics["student_parameters"]  # both MicroASTs
    assert "stand-in teacher" in json.loads(storage.read_bytes("run.json"))["teacher_label"]
    with Image.open(out / "eval/golden/contact_sheet.png") as sheet:
        assert sheet.info["Software"].startswith("Matplotlib")
        # 4 golden pairs in rows, content/style/teacher/student in columns, at DPI 100
        assert sheet.size == (940, 1050)
    with Image.open(out / "eval/golden/curves.png") as curves:
        assert curves.info["Software"].startswith("Matplotlib")
        assert curves.size == (800, 600)

    # Lose what a run killed mid-way (after training) would not have: two tiles' targets, a
    # manifest part, the evaluation. The same command finishes exactly what is missing; the
    # finished training says so and starts nothing (its resume is test_train_job's).
    part = sorted(storage.list("manifests"))[0]
    part_targets = [json.loads(text)["target"] for text in (out / part).read_text().splitlines()]
    (out / part).unlink()
    for key in part_targets[:2]:
        (out / key).unlink()
    shutil.rmtree(out / "eval")
    kept = target_times(out)
    result = run_job("pipeline", "--out", str(out), *flags, "--verbose")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert "Execution plan of Dataset" in printed and "Ray's logs: " not in printed
    assert f"written 2, already done {len(lines) - 2}" in result.stdout
    assert "run 'demo' is already complete (epoch 1 of 1" in result.stdout
    check_unchanged(out, kept)
    assert sorted(line.target for line in read_manifest(storage)) == sorted(
        line.target for line in lines
    )
    records = [json.loads(line) for line in (out / "train/demo/metrics.jsonl").open()]
    assert [(r["epoch"], r["resumed_from"]) for r in records] == [(1, 0)]
    assert (out / "eval/golden/metrics.json").exists()


def copy_samples(tmp_path: Path) -> Path:
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLES, samples, ignore=shutil.ignore_patterns("*.py", "*.md"))
    return samples


def test_an_empty_content_folder_is_one_clear_line(tmp_path):
    samples = copy_samples(tmp_path)
    for image in (samples / "content").iterdir():
        image.unlink()
    result = run_in_process("pipeline", "--samples", str(samples), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: content input {str(samples / 'content')!r} holds no images"
    )
    assert not (tmp_path / "run").exists()


def test_a_golden_image_among_the_training_inputs_is_refused(tmp_path):
    samples = copy_samples(tmp_path)
    shutil.copy(samples / "golden" / "styles" / "01.png", samples / "styles" / "renamed.png")
    result = run_in_process(
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
    """A generated run whose --student names nothing: the error is about the checkpoint."""
    data = tmp_path / "run"
    write_synthetic_run(data, n_content=3, n_style=2, size=64)
    missing = data / "train" / "nope"
    result = run_in_process("evaluate", "--data", str(data), "--student", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {missing}: no such checkpoint (nothing is stored there)"
    ]
    assert not (data / "eval").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--crop-size", "100", "error: --crop-size 100: must be a multiple of 32"),
        ("--crop-size", "256", "error: --crop-size 256: larger than the teacher resolution 128"),
        ("--steps", "5000", "error: --steps must be an integer in [2, 999], got 5000"),
    ],
)
def test_a_bad_option_is_one_line_before_any_step_runs(tmp_path, flag, value, message):
    result = run_in_process("pipeline", "--out", str(tmp_path / "run"), flag, value)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]
    assert "== generate" not in result.stdout
    assert not (tmp_path / "run").exists()


def test_a_failing_step_adds_no_second_error_line(tmp_path):
    """The step's own `error:` line is the whole story; the pipeline stops after it. In new
    interpreters (the step is one anyway): the Hub id is looked up offline, in an empty cache,
    as huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when imported."""
    out = tmp_path / "run"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = run_job("pipeline", "--out", str(out), "--model", "no-such/model", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot find model 'no-such/model'")
    assert "== train" not in result.stdout
