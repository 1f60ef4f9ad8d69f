"""Teacher flags of generate and stylize: a zero or out-of-range count is one line naming its flag,
never silently the default (`jobs.train` refuses `--batch-size 0` the same way)."""

import pytest

from tests.support.cli import run_in_process

BAD = [
    ("--batch-size", "0", "error: --batch-size must be a number >= 1, got 0"),
    ("--batch-size", "-3", "error: --batch-size must be a number >= 1, got -3"),
    ("--steps", "0", "error: --steps must be an integer in [2, 999], got 0"),
]


@pytest.mark.parametrize("teacher", ["styleid", "lsast"])
@pytest.mark.parametrize(("flag", "value", "message"), BAD)
def test_stylize_refuses_a_bad_count_naming_its_flag(tmp_path, teacher, flag, value, message):
    style = ["--style", str(tmp_path / "s.png")]
    if teacher == "lsast":
        style = ["--style-prompts", str(tmp_path / "p.safetensors")]
    args = ["--content", str(tmp_path / "c.png"), *style, "--out", str(tmp_path / "o.png")]
    result = run_in_process("stylize", *args, "--teacher", teacher, flag, value)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("teacher", ["styleid", "lsast"])
@pytest.mark.parametrize(("flag", "value", "message"), BAD)
def test_generate_refuses_a_bad_count_naming_its_flag(tmp_path, teacher, flag, value, message):
    args = ["--content", str(tmp_path), "--out", str(tmp_path / "run"), "--teacher", teacher]
    result = run_in_process("generate", *args, flag, value)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "run").exists()
