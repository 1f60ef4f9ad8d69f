"""Ray that will not start, or will not let a job join, is one `error:` line naming the cause,
not Ray's traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from common.ray_connect import start_failure
from tests.support.cli import ROOT, run_job
from tests.support.generation_helpers import FAST_TEACHER, write_inputs
from tests.support.network import free_port
from tests.support.ray_head import kill_group, ray_head

TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def token_cluster() -> Iterator[str]:
    """The address of a one-node Ray cluster that requires the auth token `TOKEN`."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    flags = [f"--port={port}", "--num-cpus=0", "--node-ip-address=127.0.0.1"]
    flags += ["--include-dashboard=false", "--disable-usage-stats"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with ray_head(flags, env, cwd=ROOT, **quiet) as head:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.monotonic() < deadline:
            assert head.poll() is None, "ray start failed"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"


def test_a_cluster_refusing_the_auth_token_is_one_error_line(token_cluster, tmp_path):
    contents, styles = write_inputs(tmp_path, 1, 1)
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(tmp_path / "run")]
    env = {"RAY_ADDRESS": token_cluster, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "f" * 32}
    result = run_job("generate", *args, *FAST_TEACHER, env=env)
    assert result.returncode == 2, result.stderr
    # the whole of it: none of the ~20 C++ warnings the driver's core worker prints...
    assert result.stderr.splitlines() == [f"error: {start_failure(token_cluster, _auth())}"]
    # ... which the run's log keeps
    (log,) = (tmp_path / "run" / "logs").glob("generate-*.log")
    assert "gcs_client.cc" in log.read_text() and "InvalidAuthToken" in log.read_text()


def _auth() -> Exception:
    return ConnectionError("RPC error: InvalidAuthToken: Authentication token is missing")


def test_a_node_that_times_out_in_start_up_is_one_error_line(tmp_path):
    """A local node whose raylet does not register within Ray's 30 s, as on an overloaded
    machine: here because the GCS holds every registration back 40 s (Ray's own setting for
    injecting delays). The job starts its own local Ray, in a session of its own."""
    contents, styles = write_inputs(tmp_path, 1, 1)
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(tmp_path / "run")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    delay = "40000000:40000000"  # microseconds, at least and at most
    setting = "RAY_testing_asio_delay_us"
    env[setting] = f"NodeInfoGcsService.grpc_server.RegisterNode={delay}"
    # files, not pipes: Ray's agents may outlive the job while holding them open
    with (tmp_path / "stderr").open("w+") as stderr:
        job = subprocess.Popen(
            [sys.executable, "-m", "jobs.generate", *args, *FAST_TEACHER],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            job.wait(timeout=300)
        finally:
            kill_group(job)  # and the Ray processes it started
        stderr.seek(0)
        # Ray echoes a RAY_ setting (this test's) as it loads, before the job starts Ray
        lines = [x for x in stderr.read().splitlines() if not x.startswith(f"{setting} is set")]
    assert job.returncode == 2, lines
    assert len(lines) == 1, lines  # no traceback, none of Ray's C++ lines
    assert lines[0].startswith("error: the local Ray node did not start in time")
