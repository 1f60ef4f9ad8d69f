"""What Ray's C++ side prints (its log lines, a dying worker's stack dump) stays off a quiet
job's console and in the logs; what a worker prints of its own still reaches the user."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.synthetic_run import write_synthetic_run
from common.ray_console import NATIVE_LOG, without_native_lines
from tests.support.cli import RAY_CPP_LOG, run_job

# a worker's stack dump as abseil and Ray's C++ logging print it (a worker's .err file)
CRASH_DUMP = re.compile(r"\*\*\* SIG\w+ received|Mutex corrupt|^\s*(PC: )?@\s+0x|\[0x[0-9a-f]+\]")


def test_a_training_run_prints_no_ray_cpp_line_and_keeps_them_in_its_log(tmp_path: Path) -> None:
    """A small `jobs.train` on its own local Ray: Ray Train's controller logs a C++ warning
    (core_worker.cc, about its PreemptionWatcher actor) that used to reach the console."""
    data = tmp_path / "run"
    write_synthetic_run(data, n_content=3, n_style=3, size=64)
    args = ["--data", str(data), "--name", "t1", "--epochs", "1", "--workers", "2"]
    args += ["--crop-size", "64", "--batch-size", "2", "--init", "scratch"]
    result = run_job("train", *args, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    printed = (result.stdout + result.stderr).splitlines()
    assert any("epoch 1/1  train_loss" in line for line in printed)  # a Ray Train worker's line
    assert [x for x in printed if RAY_CPP_LOG.search(x) or CRASH_DUMP.search(x)] == []
    # what the console leaves out is in the run's log
    (log,) = (data / "logs").glob("train-t1-*.log")
    assert any(RAY_CPP_LOG.search(line) for line in log.read_text().splitlines())


# A worker Ray's C++ side aborted, as its .err file holds it (paths and lists shortened)
DUMP = """\
[2026-12-06 22:55:19,971 E 16558 16558] logging.cc:125: Stack trace:
 /venv/ray/_raylet.so(+0x1812b9a) [0x7f52a6212b9a] ray::operator<<()
/venv/ray/_raylet.so(_ZN3ray4core10CoreWorkerD1Ev+0x260) [0x7f52a5502fb0] ray::~CoreWorker()
/lib/x86_64-linux-gnu/libc.so.6(+0x2724a) [0x7f52a6e4524a]
ray::MapWorker(MapBatches(TileActor))(_start+0x21) [0x55c45bfc0081] _start
[mutex.cc : 1418] RAW: Mutex corrupt: both reader and writer lock held: 0x55c45c1a2b40
*** SIGABRT received at time=1796597719 on cpu 0 ***
PC: @     0x7f52a6ea8eec  (unknown)  (unknown)
    @     0x7f52a6e5a050   66311952  (unknown)
[2026-12-06 22:55:19,978 E 16558 16558] logging.cc:474: PC: @     0x7f52a6ea8eec  (unknown)
Fatal Python error: Aborted
Stack (most recent call first):
  File "/venv/ray/_private/worker.py", line 1069 in main_loop
Extension modules: msgpack._cmsgpack, google._upb._message, psutil._psutil_linux (total: 3)"""
# What a worker prints of its own, a Python traceback included
OWN = """\
epoch 1/1  train_loss 0.77257  val_loss 0.68324  lr 1.00e-04  0.5 img/s  skipped 0
Traceback (most recent call last):
  File "/repo/student/train_loop.py", line 12, in run
ValueError: a line about *** stars *** and @ 0x10 addresses"""


def test_a_workers_own_lines_reach_the_console_and_its_cpp_dump_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    printed: list[dict[str, Any]] = []
    print_batch = without_native_lines(printed.append)
    own, dump = OWN.splitlines(), DUMP.splitlines()
    with caplog.at_level(logging.INFO, NATIVE_LOG.name):
        batch = {"pid": 16558, "actor_name": "MapWorker", "is_err": True}
        print_batch({**batch, "lines": [*dump[:6], *own, *dump[6:]]})
        print_batch({**batch, "lines": dump})
    assert [batch["lines"] for batch in printed] == [own]  # no batch of nothing
    assert printed[0] | {"lines": []} == batch | {"lines": []}  # the rest as Ray gave it
    assert caplog.messages == [f"(MapWorker pid=16558) {line}" for line in dump + dump]
