"""Running an entry point the way a user does: `python -m jobs.X ...` in the repository root,
or, where only its outcome matters, the same entry point in this process (`run_in_process`)."""

from __future__ import annotations

import importlib
import io
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from common.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
# What a fresh interpreter ignores (the `warnings` module's default filters); anything else it
# shows once per place, as `run_in_process` does.
IGNORED_BY_PYTHON = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def printed_lines(stream: str) -> list[str]:
    """The non-blank lines a command printed on one stream."""
    return [x for x in stream.splitlines() if x.strip()]


def run_job(
    module: str, *args: str, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m jobs.<module> args...`, capturing its output as text; `env` adds to (or
    overrides) this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", f"jobs.{module}", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_process(module: str, *args: str) -> subprocess.CompletedProcess:
    """What `run_job` returns, from `run_cli(jobs.<module>.main, args)` (the console script's
    call) in this process: a command refusing its input ends in a second instead of the 10-20 s
    a new interpreter takes to import torch, diffusers and Ray again.

    Printed lines, log records (Ray's own, and those of the handler `run_cli` installs in a
    fresh process) and warnings (shown once each, as a fresh interpreter shows them) are
    captured. Lines printed while the modules are imported, and by processes the command
    starts, are not: one `run_job` test per command covers those. Whatever the command changes
    in the environment or logging is put back."""
    main = importlib.import_module(f"jobs.{module}").main
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr), as_in_a_new_process():
        try:
            run_cli(main, list(args))
        except SystemExit as exit_:
            code = exit_.code
    command = [sys.executable, "-m", f"jobs.{module}", *args]
    return subprocess.CompletedProcess(command, code, stdout.getvalue(), stderr.getvalue())


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """A warning on (the redirected) stderr, worded as Python's default `showwarning` words it."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextmanager
def as_in_a_new_process() -> Iterator[None]:
    """Warnings and logging inside as a new interpreter has them, and afterwards the environment
    (`--verbose` sets STYLEID_VERBOSE) and logging as they were, whatever ran inside.

    Inside, pytest's warning filters and its recording of warnings are off, and the root logger
    has no handler, so the `logging.basicConfig` of `run_cli` adds one on the redirected stderr.
    """
    environment = dict(os.environ)
    root, ray_logger = logging.getLogger(), logging.getLogger("ray")
    handlers, levels = root.handlers[:], (root.level, ray_logger.level)
    root.handlers = []
    # Ray's logger prints through a handler of its own, to the stderr of when Ray was imported
    ray_streams = [
        (handler, handler.setStream(sys.stderr), handler.level)
        for handler in ray_logger.handlers
        if isinstance(handler, logging.StreamHandler) and type(handler).__module__.startswith("ray")
    ]
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for category in IGNORED_BY_PYTHON:
                warnings.simplefilter("ignore", category)
            warnings.showwarning = show_warning
            yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = handlers
        for handler, stream, level in ray_streams:  # `run_cli` sets the console's level
            handler.setStream(stream)
            handler.setLevel(level)
        root.setLevel(levels[0])
        ray_logger.setLevel(levels[1])
        for name in set(os.environ) - set(environment):
            del os.environ[name]
        os.environ.update(environment)
