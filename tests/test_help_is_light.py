"""`python -m jobs.X --help` parses its typed configs without loading torch, Ray or diffusers
(issue 24: `jobs.generate --help` took 12 s of CPU, 48 s on a loaded machine)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.cli import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

HEAVY = ("torch", "ray", "diffusers")
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# the module behind each console script ("jobs.train:cli" -> "jobs.train"): a new one is tested
JOBS = sorted({target.partition(":")[0] for target in SCRIPTS.values()})

HELP = """
import contextlib, io, json, runpy, sys
sys.argv = [{module!r}, "--help"]
with contextlib.redirect_stdout(io.StringIO()) as shown:
    try:
        runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
loaded = [name for name in {heavy!r} if name in sys.modules]
print(json.dumps({{"code": code, "help": shown.getvalue(), "loaded": loaded}}))
"""


@pytest.mark.parametrize("module", JOBS)
def test_help_loads_no_torch_ray_or_diffusers(module: str) -> None:
    code = HELP.format(module=module, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    assert result["code"] == 0
    assert f"python -m {module}" in result["help"]
    assert result["loaded"] == []
