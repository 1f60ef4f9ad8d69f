"""The local Ray a job starts when no RAY_ADDRESS names a cluster (`common.ray_connect`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.cli import ROOT

# In a fresh interpreter, as a job: its local Ray, then what Ray started under it once the
# driver has registered, then a task in a worker (carrying the job's setup hook).
LOCAL_JOB = """
import json, os, time
import psutil, ray
from common.ray_connect import connect_ray

connect_ray()
time.sleep(3)  # Ray prestarts its idle workers within about a second of the driver's start
idle = [p.pid for p in psutil.Process().children(recursive=True) if "ray::IDLE" in p.cmdline()[:1]]
task = ray.remote(lambda: os.environ["RAY_ADDRESS"]).remote()
gcs = ray.get_runtime_context().gcs_address
print(json.dumps({"idle": idle, "task_sees": ray.get(task, timeout=60), "gcs": gcs}))
"""


def test_a_jobs_local_ray_starts_no_idle_workers_and_runs_tasks() -> None:
    """One idle worker per CPU, prestarted without the job's runtime_env, would never run any
    of its tasks; the task's own worker starts when it is needed."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-c", LOCAL_JOB],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["idle"] == []
    assert seen["task_sees"] == seen["gcs"]  # `worker_setup` ran in the worker
