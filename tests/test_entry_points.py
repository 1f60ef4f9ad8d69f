"""The commands as users run them: console scripts beside `python -m jobs.X`, and `--help`
without the optional `onnx` extra."""

from __future__ import annotations

import io
import logging
import logging.handlers
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from common.cli import (
    CLOSED_PIPE,
    VERBOSE_ENV,
    console_handlers,
    quiet_ray,
    run_cli,
    verbose,
)
from tests.support.aws import use_fake_aws
from tests.support.cli import run_in_process
from tests.support.network import free_port

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_job_has_a_console_script() -> None:
    modules = {p.stem for p in (ROOT / "jobs").glob("*.py") if p.stem != "__init__"}
    assert set(SCRIPTS) == {f"styleid-{m.replace('_', '-')}" for m in modules}
    for name, target in SCRIPTS.items():
        assert target == f"jobs.{name.removeprefix('styleid-').replace('-', '_')}:cli"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_runs_the_command(name, monkeypatch, capsys) -> None:
    """Loaded the way pip's generated script loads it, then run with no arguments of its own:
    it reads sys.argv and exits through run_cli like `python -m jobs.X`."""
    cli = EntryPoint(name, SCRIPTS[name], "console_scripts").load()
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exit_:
        cli()
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "usage:" in printed and "--verbose" in printed  # every job is quiet unless asked
    monkeypatch.setattr(sys, "argv", [name, "--no-such-option"])
    with pytest.raises(SystemExit) as exit_:
        cli()
    assert exit_.value.code == 2


@pytest.mark.parametrize(("argv", "shown"), [([], False), (["--verbose"], True)])
def test_ray_logs_only_its_errors_to_the_console_unless_verbose(argv, shown, monkeypatch) -> None:
    """What `connect_ray` and the steps of `jobs.pipeline` go by (the environment), and where
    a Ray logger's records go: errors always to the console, INFO only with --verbose, and
    everything to a handler beside the console's, as the run's log file (`run_log`)."""
    import ray  # noqa: F401  (as run_cli does: its import gives Ray's logger its console handler)

    monkeypatch.setenv(VERBOSE_ENV, "0")  # and back to this machine's value after the test
    ray_logger = logging.getLogger("ray")
    monkeypatch.setattr(ray_logger, "level", ray_logger.level)
    console = io.StringIO()  # Ray's console handler writes to the stderr of Ray's import
    for handler in console_handlers("ray"):
        monkeypatch.setattr(handler, "level", handler.level)
        monkeypatch.setattr(handler, "stream", console)
    kept = logging.handlers.BufferingHandler(capacity=100)
    seen = {}

    def main(args):
        quiet_ray()  # as `parse` does once a job's command line is parsed
        seen.update(args=list(args), verbose=verbose())
        ray_logger.addHandler(kept)
        logging.getLogger("ray.train.some_module").info("an INFO line of Ray's")
        logging.getLogger("ray.train.some_module").error("an ERROR line of Ray's")
        ray_logger.removeHandler(kept)

    with pytest.raises(SystemExit) as exit_:
        run_cli(main, argv)
    assert exit_.value.code == 0
    assert seen == {"args": argv, "verbose": bool(argv)}
    assert "an ERROR line of Ray's" in console.getvalue()
    assert ("an INFO line of Ray's" in console.getvalue()) is shown
    assert [r.getMessage() for r in kept.buffer] == [
        "an INFO line of Ray's",
        "an ERROR line of Ray's",
    ]


WITHOUT_ONNX = """
import sys
sys.modules["onnx"] = sys.modules["onnxruntime"] = None  # `import onnxruntime` now fails
from jobs.export import cli
sys.argv = ["styleid-export", *sys.argv[1:]]
cli()
"""


def run_without_onnx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_ONNX, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_export_help_works_without_the_onnx_extra() -> None:
    result = run_without_onnx("--help")
    assert result.returncode == 0, result.stderr
    assert "--onnx" in result.stdout


def test_export_without_the_onnx_extra_says_what_to_install(tmp_path) -> None:
    result = run_without_onnx("--student", str(tmp_path / "none"), "--onnx", "x.onnx")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: ONNX export needs onnx: pip install -c constraints.txt '.[onnx]'"
    )


def test_help_into_a_closed_pipe_ends_quietly() -> None:
    """`python -m jobs.train --help | head -1`: the reader is gone before the help is printed
    (its end of the pipe closed at once), and the command ends with the shell's SIGPIPE code
    and nothing on stderr, not a BrokenPipeError traceback."""
    command = [sys.executable, "-m", "jobs.train", "--help"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == CLOSED_PIPE, stderr.decode()
    assert stderr == b""


COMMANDS_ON_A_STORE = {
    "train": ["--data", "s3://bucket/run", "--name", "x"],
    "evaluate": ["--data", "s3://bucket/run", "--student", "microast-authors"],
    "serve": ["--student", "s3://bucket/run/train/x"],
    "export": ["--student", "s3://bucket/run/train/x", "--onnx", "x.onnx"],
}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The tests' fake credentials in the environment (as most users give theirs) and nothing
    from this machine's AWS config, and one attempt per request (botocore retries a refused
    connection five times)."""
    use_fake_aws(monkeypatch)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return monkeypatch


@pytest.mark.parametrize("module", sorted(COMMANDS_ON_A_STORE))
def test_a_store_that_cannot_be_reached_is_one_error_line(module, aws_env) -> None:
    """An endpoint where nothing listens: the one line names the URL; where boto found the
    keys (the environment) is not printed."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    args = [*COMMANDS_ON_A_STORE[module], "--storage-option", f"endpoint_url={endpoint}"]
    result = run_in_process(module, *args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f'error: cannot reach the storage: Could not connect to the endpoint URL: "{endpoint}/'
    )


def test_a_store_without_credentials_is_one_error_line_saying_how_to_give_them(aws_env) -> None:
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    endpoint = f"http://127.0.0.1:{free_port()}"
    args = [*COMMANDS_ON_A_STORE["export"], "--storage-option", f"endpoint_url={endpoint}"]
    result = run_in_process("export", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot use the storage: Unable to locate credentials (give them as "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --storage-option key=... "
        "--storage-option secret=...)"
    ]
