"""A trained student as the teacher (`--teacher student`): its targets through the real
generation service, exactly once; a hash that follows the weights' bytes; jobs.stylize with it;
and the demo's choice of teacher and student."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.cli import parse
from common.errors import UserError
from common.images import load_square, png_bytes
from common.storage import Storage
from jobs import generate
from jobs.pipeline import Args as PipelineArgs
from jobs.pipeline import steps
from student.checkpoint import save_student
from student.inference import stylize
from student.microast import MicroASTConfig, build_microast
from teacher_workers.options import TeacherOptions
from teacher_workers.student_teacher.config import MICROAST_AUTHORS
from tests.support.cli import run_in_process
from tests.support.generation_helpers import (
    check_exactly_once,
    check_unchanged,
    run_json,
    target_times,
    write_inputs,
)

SIZE = 64
CPU = torch.device("cpu")


def options(student: str = MICROAST_AUTHORS, resolution: int = SIZE) -> TeacherOptions:
    """Pinned options of the student teacher, as jobs.generate makes them."""
    chosen = TeacherOptions(kind="student")
    chosen = replace(chosen, styleid=replace(chosen.styleid, resolution=resolution))
    chosen = replace(chosen, student_teacher=replace(chosen.student_teacher, student=student))
    return chosen.chosen().pinned()


def write_checkpoint(folder: Path, seed: int) -> Path:
    """A MicroAST checkpoint of random weights drawn with `seed`."""
    torch.manual_seed(seed)
    save_student(build_microast(MicroASTConfig(), "scratch"), MicroASTConfig(), str(folder))
    return folder


def authors_image(content: Path, style: Path) -> torch.Tensor:
    """The shipped authors' MicroAST on the teacher's squares: what a target must hold."""
    model = build_microast(MicroASTConfig(), "authors")
    square = [load_square(path.read_bytes(), SIZE) for path in (content, style)]
    return stylize(model, *square, precision="fp32")


@pytest.mark.ray
def test_its_targets_go_through_the_service_once_and_a_rerun_writes_nothing(
    ray_cluster, tmp_path, capsys
):
    contents, styles = write_inputs(tmp_path, 3, 2)
    out = tmp_path / "run"
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(out)]
    args += ["--teacher", "student", "--resolution", str(SIZE), "--tile", "2x1"]
    assert generate.main(args) == 0
    storage = Storage(str(out))
    lines = check_exactly_once(storage, 3 * 2)
    assert {line.teacher for line in lines} == {"student"}
    info = run_json(storage)
    assert info["teacher_hash"] == lines[0].teacher_hash == options().hash(CPU)
    assert info["teacher_label"] == "MicroAST authors' weights (stand-in teacher)"
    assert info["teacher_parameters"] == sum(
        p.numel() for p in build_microast(MicroASTConfig(), "scratch").parameters()
    )
    # each target is the authors' network on the pair's squares (to PNG rounding)
    line = lines[0]
    expected = png_bytes(authors_image(Path(line.content), Path(line.style)))
    stored = load_square(storage.read_bytes(line.target), SIZE)
    assert (stored - load_square(expected, SIZE)).abs().max() <= 1 / 255 + 1e-6
    before = target_times(out)
    capsys.readouterr()
    assert generate.main(args) == 0
    assert "written 0, already done 6" in capsys.readouterr().out
    check_unchanged(out, before)
    check_exactly_once(storage, 3 * 2)


def test_its_hash_follows_the_weights_bytes_and_resolution_not_their_path(tmp_path):
    first = write_checkpoint(tmp_path / "a", seed=0)
    other = write_checkpoint(tmp_path / "b", seed=1)
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in first.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    hashes = {
        name: options(str(folder)).hash(CPU)
        for name, folder in (("first", first), ("other", other), ("copy", copy))
    }
    assert hashes["first"] == hashes["copy"] != hashes["other"]
    authors = options().hash(CPU)
    assert authors not in hashes.values()
    assert options(resolution=2 * SIZE).hash(CPU) != authors
    # weights changed after the run pinned them are refused, not used under the old hash
    pinned = options(str(first))
    write_checkpoint(first, seed=2)
    with pytest.raises(UserError, match="its weights changed since the run pinned them"):
        pinned.build()


def test_a_missing_checkpoint_is_one_line_before_any_work(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        options(str(tmp_path / "nothing"))


def test_stylize_runs_a_checkpoint_as_the_teacher(tmp_path):
    contents, styles = write_inputs(tmp_path, 1, 1)
    content, style = contents / "c0.png", styles / "s0.jpg"
    checkpoint = write_checkpoint(tmp_path / "ckpt", seed=0)
    out = tmp_path / "out.png"
    result = run_in_process(
        "stylize",
        *("--teacher", "student", "--teacher-student", str(checkpoint)),
        *("--content", str(content), "--style", str(style), "--out", str(out)),
        *("--resolution", str(SIZE)),
    )
    assert result.returncode == 0, result.stderr
    made = load_square(out.read_bytes(), SIZE)
    engine = options(str(checkpoint)).build()
    square = [load_square(path.read_bytes(), SIZE) for path in (content, style)]
    expected = engine.stylize_pairs(square[0][None], [square[1]], [(0, 0)])[0]
    assert made.shape == (3, SIZE, SIZE)
    assert (made - expected).abs().max() <= 1 / 255 + 1e-6


def test_the_demo_uses_the_stand_in_without_sd_weights_and_styleid_when_asked(tmp_path):
    def argv(*extra: str) -> dict[str, list[str]]:
        return dict(steps(parse(PipelineArgs, ["--out", str(tmp_path), *extra], "p", None)))

    default = argv()
    assert default["generate"][default["generate"].index("--teacher") + 1] == "student"
    assert default["train"][default["train"].index("--arch") + 1] == "microast"
    styleid = argv("--teacher", "styleid")
    assert styleid["generate"][styleid["generate"].index("--teacher") + 1] == "styleid"
    assert styleid["train"][styleid["train"].index("--arch") + 1] == "sttr"
