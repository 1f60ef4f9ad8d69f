"""Running an entry point the way a user does: `python -m jobs.X ...` in the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
