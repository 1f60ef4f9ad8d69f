"""A driver killed outright (SIGKILL: no cleanup runs) still leaves its run log in the object
store: the log is uploaded while the job runs, not only when it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from common.run_log import UPLOAD_S
from common.storage import Storage
from tests.support.cli import ROOT

JOB = """
import json, logging, sys, time
from common.run_log import run_log
from common.storage import Storage
logging.basicConfig(level=logging.INFO)
with run_log(Storage(sys.argv[1], json.loads(sys.argv[2])), "killed"):
    logging.getLogger("job").info("a line before the kill")
    time.sleep(600)
"""


def test_a_killed_drivers_log_reaches_the_object_store(s3_bucket):
    url, options = s3_bucket
    storage = Storage(f"{url}/run", options)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(
        [sys.executable, "-c", JOB, storage.root, json.dumps(options)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60 + 2 * UPLOAD_S
        while not storage.list("logs") and time.monotonic() < deadline:
            assert driver.poll() is None, "the job ended by itself"
            time.sleep(0.5)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    (log,) = storage.list("logs")
    assert log.startswith("logs/killed-")
    assert "a line before the kill" in storage.read_bytes(log).decode()
