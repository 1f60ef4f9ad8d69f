"""A normal, non-editable install works away from the checkout: the wheel carries the demo's
samples and every console script the README names.

The fresh venv gets this project from `pip install --no-deps .` (a wheel built from the
checkout) and its dependencies from the test interpreter's site-packages through a path file,
so nothing is downloaded; the checkout is not on its path and the commands run elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.generation_helpers import FAST_TEACHER

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv holding the installed project; its `bin/` folder."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # dependencies (and pip, setuptools) from the interpreter running the tests: a plain path
    # line, so that the path files there (this checkout's editable install) are not read
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "dependencies.pth").write_text("\n".join(sorted(paths)) + "\n")
    source = copy_checkout(tmp_path_factory.mktemp("source"))
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        check=True,
        cwd=folder,
        env=clean_env(),
    )
    return folder / "bin"


def copy_checkout(folder: Path) -> Path:
    """This worktree's files (tracked and new, not ignored; links kept as links), so the build
    sees no leftovers of earlier builds and writes nothing into the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    return folder


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}


def run(venv: Path, cwd: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / command), *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_installed_project_is_the_wheel_not_the_checkout(venv, tmp_path):
    where = run(venv, tmp_path, "python", "-c", "import jobs; print(jobs.__file__)")
    assert not where.stdout.startswith(str(ROOT)), where.stdout
    assert "site-packages" in where.stdout


def test_every_console_script_is_installed_and_in_the_readme(venv):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    readme = (ROOT / "README.md").read_text()
    for name in scripts:
        assert (venv / name).exists(), name
        assert f"`{name}`" in readme, f"README names no `{name}`"


def test_the_installed_pipeline_runs_the_demos_first_step_from_its_samples(venv, tmp_path):
    helped = run(venv, tmp_path, "styleid-pipeline", "--help")
    assert helped.returncode == 0, helped.stderr
    where = run(venv, tmp_path, "python", "-c", "from jobs.pipeline import SAMPLES; print(SAMPLES)")
    samples = Path(where.stdout.strip())  # the default of --samples
    assert "site-packages" in str(samples) and not samples.is_symlink()
    assert len(list((samples / "golden" / "styles").glob("*.png"))) >= 2
    sets = ("content", "faces", "styles", "golden/content", "golden/styles")
    inputs = [arg for name in sets for arg in (f"--{name.replace('/', '-')}", str(samples / name))]
    out = tmp_path / "run"
    result = run(
        venv,
        tmp_path,
        "styleid-generate",
        *inputs,
        "--planner",
        "recipe",
        "--out",
        str(out),
        "--model",
        "tiny",
        *FAST_TEACHER,
    )
    assert result.returncode == 0, result.stderr
    assert "failed now 0" in result.stdout, result.stdout
    assert list(out.glob("manifests/*/part-*.jsonl"))
