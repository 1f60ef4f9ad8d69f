"""Two `jobs.generate` runs on one output root: the second waits for the first's lease, then
finds its pairs done; every pair is made once in total and the runs' counts add up to the plan.
A lease whose holder is gone or silent is taken over."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from common.lease import LEASE_KEY, OutputLease
from common.storage import Storage
from tests.support.cli import ROOT
from tests.support.generation_helpers import FAST_TEACHER, check_exactly_once, write_inputs

SUMMARY = re.compile(r"pairs planned (\d+), written (\d+), already done (\d+), failed now (\d+)")


def test_a_second_holder_waits_until_the_first_releases(tmp_path, capsys):
    storage = Storage(str(tmp_path))
    held = threading.Event()
    order: list[str] = []

    def second() -> None:
        with OutputLease(storage, "second", poll_s=0.05):
            order.append("second holds")
        held.set()

    with OutputLease(storage, "first", heartbeat_s=0.05):
        waiter = threading.Thread(target=second)
        waiter.start()
        while "waiting for first run" not in capsys.readouterr().out:
            assert waiter.is_alive()
            time.sleep(0.01)
        assert not held.is_set()
        order.append("first releases")
    waiter.join(timeout=30)
    assert order == ["first releases", "second holds"]
    assert not storage.exists(LEASE_KEY)


@pytest.mark.parametrize("dead", ["silent", "gone"])
def test_a_dead_holders_lease_is_taken_over(tmp_path, capsys, dead):
    storage = Storage(str(tmp_path))
    with OutputLease(storage, "killed") as old:
        lease = json.loads(storage.read_bytes(LEASE_KEY))
    lease |= {"heartbeat": time.time() - 3600} if dead == "silent" else {"pid": 2**22 + 1}
    storage.write_bytes(LEASE_KEY, json.dumps(lease).encode())
    with OutputLease(storage, "generate") as new:
        assert json.loads(storage.read_bytes(LEASE_KEY))["run_id"] == new.run_id != old.run_id
    assert f"taking over the output's lease from killed run {old.run_id}" in capsys.readouterr().out


def run_twice_at_once(args: list[str], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Two drivers of the same command, started together (joining the test's cluster)."""
    command = [sys.executable, "-m", "jobs.generate", *args]
    drivers = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [driver.communicate(timeout=600) for driver in drivers]
    return [
        subprocess.CompletedProcess(command, d.returncode, out, err)
        for d, (out, err) in zip(drivers, outputs, strict=True)
    ]


def check_counts_add_up(results: list[subprocess.CompletedProcess], planned: int) -> None:
    """Both succeed; the pairs each made now add up to the plan, none made twice."""
    written = 0
    for result in results:
        assert result.returncode == 0, result.stderr
        counts = [int(n) for n in SUMMARY.search(result.stdout).groups()]
        assert counts[0] == planned and counts[3] == 0
        assert counts[1] + counts[2] == planned  # every pair made or found, by each run
        written += counts[1]
    assert written == planned, [r.stdout for r in results]


def test_two_concurrent_runs_on_one_local_root_make_each_pair_once(ray_cluster, tmp_path):
    contents, styles = write_inputs(tmp_path, 3, 2)
    out = tmp_path / "run"
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(out), *FAST_TEACHER]
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    results = run_twice_at_once([*args, "--tile", "1x1"], env)
    check_counts_add_up(results, 6)
    storage = Storage(str(out))
    check_exactly_once(storage, 6)
    assert not storage.exists(LEASE_KEY)


def test_two_concurrent_runs_on_one_s3_root_make_each_pair_once(
    ray_cluster, tmp_path, s3_bucket, s3_puts
):
    url, options = s3_bucket
    contents, styles = write_inputs(tmp_path, 3, 2)
    endpoint = options["client_kwargs"]["endpoint_url"]
    args = ["--content", str(contents), "--styles", str(styles), "--out", f"{url}/run"]
    args += [*FAST_TEACHER, "--tile", "1x1"]
    args += [f"--storage-option=client_kwargs.endpoint_url={endpoint}"]
    args += [f"--storage-option={name}={options[name]}" for name in ("key", "secret")]
    args += ["--storage-option=client_kwargs.region_name=us-east-1"]
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    results = run_twice_at_once(args, env)
    check_counts_add_up(results, 6)
    storage = Storage(f"{url}/run", options)
    check_exactly_once(storage, 6)
    assert not storage.exists(LEASE_KEY)
    bucket = url.removeprefix("s3://")
    target_puts = Counter({k: n for k, n in s3_puts().items() if f"/{bucket}/run/targets/" in k})
    assert len(target_puts) == 6 and set(target_puts.values()) == {1}
