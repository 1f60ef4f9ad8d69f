"""Ray heads that a test starts itself (`ray start --head --block`), beside the session's own
cluster and those of the other test process, and their end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RAY = Path(sys.executable).with_name("ray")


@contextlib.contextmanager
def ray_head(flags: list[str], env: dict[str, str], **popen: Any) -> Iterator[subprocess.Popen]:
    """`ray start --head --block *flags` in a session of its own, killed with all it started
    on leaving. It gets a Ray temp dir of its own: Ray's job server gives a submitted job the
    address of the last head started on the machine (the `ray_current_cluster` file of its temp
    dir), which in the shared /tmp/ray may be another test's head. A short path: Ray's socket
    paths under it must fit in 107 bytes."""
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    command = [str(RAY), "start", "--head", "--block", f"--temp-dir={temp_dir}", *flags]
    head = subprocess.Popen(command, env=env, start_new_session=True, **popen)
    try:
        yield head
    finally:
        kill_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def kill_group(leader: subprocess.Popen) -> None:
    """End a process started in a session of its own (a head, or a job that started its own
    Ray) and every process it started, at once: they share its process group and none may
    outlive the test. SIGKILL, not a clean stop: that takes Ray ~30 s on 2 cores, and a test's
    Ray keeps nothing that needs one."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait()
