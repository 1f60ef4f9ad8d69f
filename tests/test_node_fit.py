"""A worker no node can hold stops the job with one line, or waits a bounded time for the
autoscaler; on the local test cluster (4 CPUs, no GPU) and with fake launcher configs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import UserError
from teacher_workers.node_fit import node_types, wait_for_fit
from tests.support.cli import python_lines
from tests.support.generation_helpers import FAST_TEACHER, write_inputs

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_CONFIG = """
available_node_types:
  head:
    resources: {"CPU": 0}
  gpu:
    resources: {"CPU": 4, "GPU": 1}
  cpu:
    node_config: {InstanceType: m5.2xlarge}
"""


def launcher_config(tmp_path: Path, text: str = LAUNCHER_CONFIG) -> Path:
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(text)
    return path


def test_node_types_come_from_the_launcher_config(tmp_path):
    assert node_types(launcher_config(tmp_path)) == {
        "head": {"CPU": 0},
        "gpu": {"CPU": 4, "GPU": 1},
        "cpu": None,  # left to the autoscaler, which reads the instance type
    }
    assert node_types(tmp_path / "absent.yaml") is None


def test_a_worker_that_fits_a_node_does_not_wait(ray_cluster, tmp_path):
    start = time.monotonic()
    wait_for_fit(2, 0, timeout_s=1, config=tmp_path / "absent.yaml")
    assert time.monotonic() - start < 1


def test_no_gpu_and_no_autoscaler_is_one_line_at_once(ray_cluster, tmp_path):
    with pytest.raises(UserError) as error:
        wait_for_fit(1, 1, timeout_s=600, config=tmp_path / "absent.yaml")
    message = str(error.value)
    assert message.startswith("--gpus-per-worker 1: no node in the cluster has 1 CPU and 1 GPU")
    assert "(it has 4 CPU, 0 GPU)" in message and "does not autoscale" in message
    assert "\n" not in message


def test_a_worker_no_node_type_can_hold_is_refused(ray_cluster, tmp_path):
    config = launcher_config(tmp_path, "available_node_types:\n  a: {resources: {CPU: 8}}\n")
    with pytest.raises(UserError, match=f"--gpus-per-worker 1: no node type in {config} has"):
        wait_for_fit(1, 1, timeout_s=600, config=config)
    with pytest.raises(UserError, match="--cpus-per-worker 16: no node type in"):
        wait_for_fit(16, 0, timeout_s=600, config=config)


def test_an_autoscaling_cluster_is_waited_for_until_the_startup_timeout(
    ray_cluster, tmp_path, caplog
):
    start = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="teacher_workers.node_fit"),
        pytest.raises(UserError, match="within --startup-timeout 3 s"),
    ):
        wait_for_fit(1, 1, timeout_s=3, config=launcher_config(tmp_path), poll_s=0.2, report_s=1)
    assert 3 <= time.monotonic() - start < 10
    waiting = [
        r.getMessage() for r in caplog.records if "waiting for the autoscaler" in r.getMessage()
    ]
    assert len(waiting) >= 2 and "a node with 1 CPU and 1 GPU" in waiting[0]


def test_the_job_asking_a_gpu_of_a_cluster_without_one_stops_within_a_minute(ray_cluster, tmp_path):
    if Path("~/ray_bootstrap_config.yaml").expanduser().exists():
        pytest.skip("this machine is the head of an autoscaling cluster")
    contents, styles = write_inputs(tmp_path, 1, 1)
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(tmp_path / "o")]
    result = subprocess.run(
        [sys.executable, "-m", "jobs.generate", *args, *FAST_TEACHER, "--gpus-per-worker", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == python_lines(result.stderr)[-1:], result.stderr
    assert errors[0].startswith("error: --gpus-per-worker 1: no node in the cluster has")
