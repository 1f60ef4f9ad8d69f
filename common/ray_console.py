"""Ray's C++ output kept off a quiet job's console (`connect_ray` applies it unless `--verbose`).

Ray's C++ side (raylet, and the core worker inside the driver and every worker) logs to its
files in Ray's session folder and its errors and some warnings to its process's stderr as
well. Those stderr lines reach the user two ways: a worker's and the raylet's are streamed to
the driver, which prints them as "(TrainController pid=3341) [2026-12-07 01:56:25,198 E 3341
3371] core_worker.cc:2465: ..." (after a fault, a dying worker's ~15-30-line stack dump too);
the driver's own core worker writes straight to fd 2 (~20 `InvalidAuthToken` warnings before the
job's `error:` line when a cluster refuses its token). None of it is for the user to act on:
the job's own lines say what happened. Here both go to `NATIVE_LOG` instead, which the run's
log file keeps; the streamed ones stay in Ray's session logs as well, untouched.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

# A line of Ray's C++ output, from its start (a streamed line comes without the driver's prefix)
NATIVE_LINE = re.compile(
    r"\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] (\(\w+\) )?[\w.-]+\.(cc|h):\d+:"  # RAY_LOG
    r"|[DIWEF]\d{4} [\d:.]+ +\d+ [\w.-]+\.(cc|h):\d+\] "  # abseil's and gRPC's LOG
    r"|\[[\w.-]+\.(cc|h) ?: ?\d+\] RAW: "  # abseil's raw log ("Mutex corrupt: ...")
    r"|RAY_\w+ is set to "  # Ray's config, echoing a setting made in the environment
    r"|\*\*\* .+ \*\*\*$"  # a fatal signal's header ("*** SIGABRT received at time=...")
    r"|\s*(PC: )?@ +0x[0-9a-f]+ "  # abseil's frames under it
    r"|\s*\S+\([\w.]*\+0x[0-9a-f]+\) \[0x[0-9a-f]+\]"  # a frame of Ray's "Stack trace:"
    # Python's fault handler, in a worker Ray's C++ side aborts
    r"|Fatal Python error: Aborted|Stack \(most recent call first\):|Extension modules: "
    r"|Current thread 0x[0-9a-f]+ |Thread 0x[0-9a-f]+ |  File \".*\", line \d+ in "
)
# Ray's hierarchy, so the records go where `common.cli.quiet_ray` sends Ray's own: the console
# at ERROR (they are logged at INFO: none), the run's log file from INFO
NATIVE_LOG = logging.getLogger("ray.native")
PRINTER = "ray_print_logs"  # the name of Ray's handler that prints streamed lines

logger = logging.getLogger(__name__)


def native_lines_streamed_to_log() -> None:
    """From now on, the lines Ray streams from its workers and raylets to this driver go to
    `NATIVE_LOG` when they are its C++ output, to the console as before when not.

    Ray has no public hook for this (its `log_to_driver=False` drops workers' own lines too,
    such as Ray Train's "epoch 1/1 ..."): this wraps the printer that Ray 2.x adds to its
    private `global_worker_stdstream_dispatcher`. Should Ray's internals change, it does
    nothing but log so (the lines then reach the console as in `--verbose`)."""
    try:
        from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher

        with dispatcher._lock:
            names = [name for name, _ in dispatcher.handlers]
            if PRINTER not in names:
                raise LookupError(f"no handler {PRINTER!r} among {names}")
            dispatcher.handlers = [
                (name, without_native_lines(handler) if name == PRINTER else handler)
                for name, handler in dispatcher.handlers
            ]
    except Exception as exc:  # any change of Ray's internals: the console just stays as it was
        logger.debug("Ray's C++ lines from workers stay on the console: %r", exc)


def without_native_lines(printer: Callable[[dict[str, Any]], None]) -> Callable[[dict], None]:
    """Ray's `printer` of a batch of a process's streamed lines, less its C++ lines, which
    go to `NATIVE_LOG` with the prefix Ray would print before them ("TrainController pid=3341")."""

    def print_batch(data: dict[str, Any]) -> None:
        name = data.get("actor_name") or data.get("task_name")
        who = f"{name} " if name else ""
        kept = []
        for line in data.get("lines", []):
            if NATIVE_LINE.match(line):
                NATIVE_LOG.info("(%spid=%s) %s", who, data.get("pid"), line)
            else:
                kept.append(line)
        if kept:
            printer({**data, "lines": kept})

    return print_batch


def native_stderr_to_log() -> None:
    """From now on, what this process writes to fd 2 passes through a pipe: a thread copies
    it to the real stderr, less Ray's C++ lines, which go to `NATIVE_LOG`. The driver's own core
    worker and GCS client write their warnings and errors there directly, not through Python,
    from `ray.init` (a refused auth token) to the job's end (an actor with `max_restarts`).
    At exit, fd 2 is itself again once the thread has copied what was written before."""
    sys.stderr.flush()
    real_stderr = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    done = threading.Event()
    pump = threading.Thread(
        target=copy_stderr, args=(read_end, real_stderr, done), name="stderr-filter", daemon=True
    )
    pump.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # later writes go straight to stderr; the pipe is drained
        done.set()
        pump.join(timeout=5)

    atexit.register(restore)


def copy_stderr(read_end: int, real_stderr: int, done: threading.Event) -> None:
    """Copy the pipe to the real stderr line by line, less Ray's C++ lines, until `done` is
    set and the pipe holds nothing more. A line without its end yet (a progress bar's) goes on
    at once: Ray writes each of its lines whole. Should anything here fail, the rest is copied
    unfiltered: a writer to a pipe nobody reads would hang."""
    try:
        while True:
            if not select.select([read_end], [], [], 0.1)[0]:
                if done.is_set():
                    return
                continue
            if not (chunk := os.read(read_end, 1 << 16)):
                return  # no writer is left
            for line in chunk.splitlines(keepends=True):
                text = line.decode(errors="replace")
                if NATIVE_LINE.match(text):
                    NATIVE_LOG.info("%s", text.rstrip())
                else:
                    os.write(real_stderr, line)
    except Exception:
        while chunk := os.read(read_end, 1 << 16):
            os.write(real_stderr, chunk)
