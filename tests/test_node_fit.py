"""A worker no node can hold stops the job with one line, or waits a bounded time for the
autoscaler: on the local test cluster (4 CPUs, no GPU, no autoscaler), with a cluster config
reported to its GCS, and on a real `ray start --head --autoscaling-config` cluster (Ray's fake
multi-node provider) that no launcher set up, so no ~/ray_bootstrap_config.yaml exists."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import yaml
from ray.core.generated import autoscaler_pb2

from common.errors import UserError
from teacher_workers.node_fit import scalable_groups, wait_for_fit
from tests.support.cli import printed_lines
from tests.support.generation_helpers import FAST_TEACHER, write_inputs
from tests.support.network import free_port
from tests.support.ray_head import ray_head

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# What `ray up` would have merged into a launcher config; Ray's fake provider launches each
# node as local Ray processes with the node type's resources.
FAKE_AUTOSCALING_CONFIG = {
    "cluster_name": "node-fit",
    "max_workers": 1,
    "idle_timeout_minutes": 5,
    "upscaling_speed": 1.0,
    "provider": {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    },
    "auth": {"ssh_user": "ubuntu"},
    "head_node_type": "ray.head.default",
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
        "gpu": {
            "resources": {"CPU": 1, "GPU": 1},
            "node_config": {},
            "min_workers": 0,
            "max_workers": 1,
        },
    },
    "file_mounts": {},
    **{
        key: []
        for key in (
            "cluster_synced_files",
            "rsync_exclude",
            "rsync_filter",
            "initialization_commands",
            "setup_commands",
            "head_setup_commands",
            "worker_setup_commands",
            "head_start_ray_commands",
            "worker_start_ray_commands",
        )
    },
    "file_mounts_sync_continuously": False,
}


def report_cluster_config(groups: list[autoscaler_pb2.NodeGroupConfig]) -> None:
    """What an autoscaler that reports its config writes to the GCS (an empty one: none)."""
    config = autoscaler_pb2.ClusterConfig(node_group_configs=groups)
    ray._private.worker.global_worker.gcs_client.report_cluster_config(config.SerializeToString())


@pytest.fixture
def reported_config(ray_cluster) -> Iterator[None]:
    report_cluster_config(
        [
            autoscaler_pb2.NodeGroupConfig(name="head", resources={"CPU": 4}, max_count=0),
            autoscaler_pb2.NodeGroupConfig(
                name="gpu", resources={"CPU": 8, "GPU": 1}, min_count=0, max_count=4
            ),
            autoscaler_pb2.NodeGroupConfig(
                name="fixed", resources={"CPU": 96}, max_count=2, min_count=2
            ),
        ]
    )
    try:
        yield
    finally:
        report_cluster_config([])


def test_scalable_groups_come_from_the_gcs_cluster_config(ray_cluster, reported_config):
    assert scalable_groups() == {"gpu": {"CPU": 8, "GPU": 1}}  # fixed and head groups cannot grow


def test_no_cluster_config_reported_is_none(ray_cluster):
    assert scalable_groups() is None


def test_a_worker_that_fits_a_node_does_not_wait(ray_cluster):
    start = time.monotonic()
    wait_for_fit(2, 0, timeout_s=1)
    assert time.monotonic() - start < 1


def test_no_gpu_and_no_autoscaler_is_one_line(ray_cluster):
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        wait_for_fit(1, 1, timeout_s=600, probe_s=3, poll_s=0.5)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert message.startswith("--gpus-per-worker 1: no node in the cluster has 1 CPU and 1 GPU")
    assert "(it has 4 CPU, 0 GPU)" in message and "the autoscaler started none" in message
    assert "\n" not in message


def test_a_worker_no_reported_group_can_hold_is_refused_at_once(ray_cluster, reported_config):
    with pytest.raises(UserError, match="--gpus-per-worker 2: no node group the cluster may add"):
        wait_for_fit(1, 2, timeout_s=600)
    with pytest.raises(UserError, match="--cpus-per-worker 16: no node group"):
        wait_for_fit(16, 0, timeout_s=600)


def test_a_reported_group_that_fits_is_waited_for_until_the_startup_timeout(
    ray_cluster, reported_config, caplog
):
    start = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="teacher_workers.node_fit"),
        pytest.raises(UserError, match="within --startup-timeout 3 s"),
    ):
        wait_for_fit(1, 1, timeout_s=3, poll_s=0.2, report_s=1)
    assert 3 <= time.monotonic() - start < 10
    waiting = [
        r.getMessage() for r in caplog.records if "waiting for the autoscaler" in r.getMessage()
    ]
    assert len(waiting) >= 2 and "a node with 1 CPU and 1 GPU" in waiting[0]


@pytest.fixture(scope="module")
def autoscaling_head(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """`ray start --head --autoscaling-config` with no CPUs on the head and a GPU node type the
    autoscaler may add; yields its GCS address and the environment to reach it."""
    folder = tmp_path_factory.mktemp("autoscaling-head")
    config = folder / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(FAKE_AUTOSCALING_CONFIG))
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_FAKE_CLUSTER": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "PYTHONPATH": str(ROOT),
        "HOME": str(folder),  # no ~/ray_bootstrap_config.yaml, whatever this machine has
    }
    env.pop("RAY_ADDRESS", None)
    flags = [
        f"--port={port}",
        "--include-dashboard=false",
        "--num-cpus=0",
        "--num-gpus=0",
        f"--autoscaling-config={config}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    with ray_head(flags, env, cwd=folder, **output) as head:
        address = ""
        for line in head.stdout:
            if "ray start --address=" in line:
                address = re.search(r"--address='([\d.]+:\d+)", line).group(1)
                break
        assert address, "the autoscaling head did not start"
        yield address, env


PROBE = """
import logging, sys, ray
from common.errors import UserError
from teacher_workers.node_fit import wait_for_fit
logging.basicConfig(level=logging.WARNING)
ray.init(address=sys.argv[1], logging_level="ERROR")
try:
    wait_for_fit(1, 1, timeout_s=float(sys.argv[2]), report_s=5)
    print("fits")
except UserError as exc:
    print(f"error: {exc}")
"""


def test_an_autoscaling_cluster_is_recognised_without_a_launcher_file(autoscaling_head):
    """Started with an autoscaler and no launcher: the GPU node is asked for and waited for
    (saying so), whether it joins in time or the startup timeout ends the wait."""
    address, env = autoscaling_head
    assert not (Path(env["HOME"]) / "ray_bootstrap_config.yaml").exists()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, address, "15"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert "waiting for the autoscaler to start a node with 1 CPU and 1 GPU" in output, output
    assert "the autoscaler started none" not in output, output
    last = result.stdout.strip().splitlines()[-1]
    assert last == "fits" or last.startswith(
        "error: --cpus-per-worker 1 --gpus-per-worker 1: no node with 1 CPU and 1 GPU joined "
        "the cluster within --startup-timeout 15 s"
    ), output


def test_the_job_asking_a_gpu_of_a_cluster_without_one_stops_within_a_minute(ray_cluster, tmp_path):
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
    assert errors == printed_lines(result.stderr)[-1:], result.stderr
    assert errors[0].startswith("error: --gpus-per-worker 1: no node in the cluster has")
