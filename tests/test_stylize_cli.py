"""`python -m jobs.stylize` with the teacher: one PNG out, and one clear line for bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.cli import run_in_process, run_job
from tests.support.network import free_port


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = {"content": folder / "content.jpg", "style": folder / "style.png"}
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(paths["content"])
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(paths["style"])
    paths["corrupt"] = folder / "corrupt.png"
    paths["corrupt"].write_bytes(Path(paths["style"]).read_bytes()[:60])
    paths["text"] = folder / "notes.jpg"
    paths["text"].write_text("not an image")
    return paths


def test_teacher_writes_a_png_of_the_teacher_resolution(pictures, tmp_path):
    out = tmp_path / "deep" / "out.png"
    result = run_job(
        "stylize",
        "--content",
        str(pictures["content"]),
        "--style",
        str(pictures["style"]),
        "--out",
        str(out),
        "--resolution",
        "64",
        "--steps",
        "4",
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (64, 64) and image.mode == "RGB"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--content", "corrupt", "corrupt.png: "),
        ("--content", "text", "notes.jpg: not a readable image"),
        ("--content", "unreachable", "cannot read --content http://127.0.0.1:"),
        ("--style", "missing", "no such file"),
        ("--out", "unreachable", "cannot write to http://127.0.0.1:"),
        ("--model", "no-such-model", "unknown model 'no-such-model'"),
        ("--steps", "0", "--steps must be an integer in [2, 999], got 0"),
        ("--steps", "1000", "--steps must be an integer in [2, 999], got 1000"),
    ],
)
def test_bad_input_is_one_clear_line(pictures, tmp_path, flag, value, message):
    args = {
        "--content": str(pictures["content"]),
        "--style": str(pictures["style"]),
        "--out": str(tmp_path / "out.png"),
        "--resolution": "64",
    }
    special = {
        "missing": str(tmp_path / "missing.png"),
        "unreachable": f"http://127.0.0.1:{free_port()}/x.png",  # nothing listens there
    }
    args[flag] = str(pictures[value]) if value in pictures else special.get(value, value)
    result = run_in_process("stylize", *[part for pair in args.items() for part in pair])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_help_lists_the_teacher_flags():
    result = run_in_process("stylize", "--help")
    assert result.returncode == 0
    for flag in ("--gamma", "--T", "--steps", "--model", "--no-adain", "--no-injection"):
        assert flag in result.stdout


def test_lsast_teacher_stylizes_with_a_learned_style(pictures, tmp_path):
    """In-process (no subprocess start-up): a prompt folder as jobs.learn_style writes it."""
    from common.errors import UserError
    from jobs import stylize
    from teacher_workers.lsast.generator import generator_bytes, new_generator
    from teacher_workers.models import load_teacher

    learned = tmp_path / "learned"
    learned.mkdir()
    teacher = load_teacher("tiny", text_encoder=True)
    (learned / "prompts.safetensors").write_bytes(generator_bytes(new_generator(teacher)))
    out = tmp_path / "out.png"
    args = ["--content", str(pictures["content"]), "--out", str(out), "--teacher", "lsast"]
    args += ["--controlnet", "tiny", "--resolution", "64", "--steps", "3"]
    assert stylize.main([*args, "--style-prompts", str(learned)]) == 0
    assert Image.open(out).size == (64, 64)
    with pytest.raises(UserError, match="--style-prompts is required with --teacher lsast"):
        stylize.main([*args, "--style", str(pictures["style"])])
