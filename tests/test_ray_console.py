"""Ray's C++ lines streamed from workers (its log lines, a dying worker's stack dump) go to the
log, not a quiet job's console; what a worker prints of its own still reaches the user. The
demo's test (tests/test_pipeline.py) checks a whole job's console."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from common.ray_console import NATIVE_LOG, without_native_lines

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
