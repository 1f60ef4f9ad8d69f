"""A real `ray job submit` of each cluster job (`jobs.generate`, `jobs.train`, `jobs.evaluate`)
to one `ray start --head` cluster on 127.0.0.1, the way README deploys: from a plain copy of the
checkout (not installed anywhere) with `--working-dir . --runtime-env runtime_env.yaml`, so the
jobs run the uploaded code."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.synthetic_run import write_synthetic_run
from common.storage import Storage
from tests.support.generation_helpers import FAST_TEACHER, check_exactly_once, write_inputs
from tests.support.network import free_port
from tests.support.ray_head import ray_head

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> tuple[Path, str]:
    """This worktree's files (tracked and new, not ignored) copied to a folder nothing installs
    or puts on a path, with a token in its `jobs` package that no other copy of the code has."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    folder = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    token = secrets.token_hex(8)
    with (folder / "jobs" / "__init__.py").open("a") as init:
        init.write(f"\nSHIPPED = {token!r}\n")
    return folder, token


@pytest.fixture(scope="module")
def head_node(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """`ray start --head --block` in its own process group; yields the dashboard address."""
    port, dashboard = free_port(), free_port()
    # Ray 2.60's head requires token authentication; head and client share a fresh token.
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("PYTHONPATH", None)  # nothing but the uploaded working_dir brings this project's code
    flags = [
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        # its own agent ports: another Ray on this machine (the session's test cluster)
        # already holds the defaults, and a head whose agent cannot bind takes no jobs
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        "--num-cpus=2",
        "--num-gpus=0",
    ]
    address = f"http://127.0.0.1:{dashboard}"
    with ray_head(
        flags,
        env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path_factory.mktemp("head"),  # not the repository, so no job imports from it
    ):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [str(BIN / "ray"), "job", "list", "--address", address],
                env=env,
                capture_output=True,
                timeout=60,
            )
            if probe.returncode == 0:
                break
            time.sleep(2)
        else:
            pytest.fail("the Ray head's job server did not come up")
        yield address, env


def submit(
    address: str, env: dict[str, str], checkout: Path, entrypoint: list[str]
) -> subprocess.CompletedProcess:
    """`ray job submit` as README has it, from the checkout's folder; retried while the head's
    job agent is still starting (it can lag the job server that `ray job list` answers from)."""
    deadline = time.monotonic() + 60
    command = [str(BIN / "ray"), "job", "submit", "--address", address]
    command += ["--working-dir", ".", "--runtime-env", "runtime_env.yaml", "--", *entrypoint]
    while True:
        result = subprocess.run(
            command, env=env, cwd=checkout, capture_output=True, text=True, timeout=400
        )
        if "No available agent" not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(3)


WHERE_IS_THE_CODE = """
import ray, jobs
from common.ray_connect import connect_ray
connect_ray()
remote = ray.remote(lambda: (__import__("jobs").__file__, __import__("jobs").SHIPPED))
print("driver", jobs.__file__, jobs.SHIPPED)
print("worker", *ray.get(remote.remote()))
"""


def test_jobs_run_the_uploaded_checkout(head_node, checkout):
    """The driver and the cluster's workers import the copy that `--working-dir .` uploaded
    (from the folder Ray unpacked it to), not the installed project nor this worktree."""
    address, env = head_node
    folder, token = checkout
    result = submit(address, env, folder, ["python", "-c", WHERE_IS_THE_CODE])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines()]
    seen = {words[0]: words[1:] for words in lines if words[:1] in (["driver"], ["worker"])}
    assert set(seen) == {"driver", "worker"}, result.stdout[-3000:]
    for where, (path, shipped) in seen.items():
        assert shipped == token, where
        assert "runtime_resources" in Path(path).parts, path  # Ray's unpacked working_dir
        assert not Path(path).is_relative_to(ROOT), path
        assert not Path(path).is_relative_to(folder), path


def test_ray_job_submit_runs_generation(head_node, checkout, tmp_path):
    address, env = head_node
    contents, styles = write_inputs(tmp_path, 2, 2)
    out = tmp_path / "run"
    result = submit(
        address,
        env,
        checkout[0],
        [
            "python",
            "-m",
            "jobs.generate",
            "--content",
            str(contents),
            "--styles",
            str(styles),
            "--out",
            str(out),
            *FAST_TEACHER,
            "--workers",
            "1:2",
        ],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    assert "pairs planned 4, written 4" in result.stdout
    check_exactly_once(Storage(str(out)), 4)


def test_ray_job_submit_trains_and_evaluates_the_student(head_node, checkout, tmp_path):
    address, env = head_node
    data = tmp_path / "run"
    write_synthetic_run(data, n_content=3, n_style=2, size=64)
    train = [
        *("python", "-m", "jobs.train", "--data", str(data), "--name", "sub"),
        *("--epochs", "1", "--workers", "1", "--batch-size", "2", "--crop-size", "64"),
        *("--init", "scratch", "--enc-layers", "1", "--dec-layers", "1", "--loader-workers", "0"),
    ]
    result = submit(address, env, checkout[0], train)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    assert (data / "train" / "sub" / "epoch-0001" / "model.safetensors").exists()
    evaluate = ["python", "-m", "jobs.evaluate", "--data", str(data)]
    evaluate += ["--vgg-weights", "random", "--lpips-weights", "random"]
    student = ["--student", str(data / "train" / "sub")]
    result = submit(address, env, checkout[0], [*evaluate, *student])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    metrics = json.loads((data / "eval" / "golden" / "metrics.json").read_text())
    assert len(metrics["pairs"]) == 2  # the last content with both styles is golden
