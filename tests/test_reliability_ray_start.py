"""Ray that will not start, or will not let a job join, is one `error:` line naming the cause,
not Ray's traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.ray_connect import start_failure
from tests.support.cli import ROOT, python_lines, run_job
from tests.support.generation_helpers import FAST_TEACHER, write_inputs

RAY = Path(sys.executable).with_name("ray")
TOKEN = "0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def token_cluster() -> Iterator[str]:
    """The address of a one-node Ray cluster that requires the auth token `TOKEN`."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    command = [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=0"]
    command += ["--node-ip-address=127.0.0.1", "--include-dashboard=false"]
    head = subprocess.Popen(
        [*command, "--disable-usage-stats"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.monotonic() < deadline:
            assert head.poll() is None, "ray start failed"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:  # the head's processes share its process group: none outlives the test
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=30)


def test_a_cluster_refusing_the_auth_token_is_one_error_line(token_cluster, tmp_path):
    contents, styles = write_inputs(tmp_path, 1, 1)
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(tmp_path / "run")]
    env = {"RAY_ADDRESS": token_cluster, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "f" * 32}
    result = run_job("generate", *args, *FAST_TEACHER, env=env)
    assert result.returncode == 2, result.stderr
    assert python_lines(result.stderr)[-1:] == [f"error: {start_failure(token_cluster, _auth())}"]
    assert "Traceback" not in result.stderr


def _auth() -> Exception:
    return ConnectionError("RPC error: InvalidAuthToken: Authentication token is missing")


def test_a_node_that_times_out_in_start_up_is_named():
    exc = Exception(
        "The current node timed out during startup. This could happen because some of the "
        "raylet failed to startup or the GCS has become overloaded."
    )
    line = start_failure("local", exc)
    assert line.startswith("the local Ray node did not start in time") and "\n" not in line
