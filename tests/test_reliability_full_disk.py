"""A full disk: one `error:` line naming the cause, a run log that stops quietly instead of burying
that line, and no temporary file of a failed or interrupted write surviving the next run."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from common.errors import UserError
from common.run_log import RunLogHandler
from common.storage import Storage
from tests.support.cli import printed_lines, run_job
from tests.support.generation_helpers import FAST_TEACHER, check_exactly_once, write_inputs

NO_SPACE = "No space left on device"


class FullLocalFileSystem(LocalFileSystem):
    """A local disk that fills up in the middle of every write: half the bytes land, then
    ENOSPC, as a real full disk fails."""

    def pipe_file(self, path: str, value: bytes, *args, **kwargs) -> None:
        super().pipe_file(path, value[: len(value) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, NO_SPACE)


def temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if ".tmp-" in path.name]


def test_a_write_that_fills_the_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    storage = Storage(str(tmp_path / "run"))
    storage.fs = FullLocalFileSystem()
    with pytest.raises(UserError, match=f"cannot write .*/targets/t/a.png: .*{NO_SPACE}"):
        storage.write_bytes("targets/t/a.png", b"x" * 1000)
    assert [p for p in (tmp_path / "run").rglob("*") if p.is_file()] == []


def test_the_temporary_files_of_killed_writes_are_removed(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_bytes("targets/t/s/c.png", b"kept")
    leftovers = [tmp_path / f"targets/t/s/{name}.png.tmp-{uuid.uuid4().hex}" for name in "ab"]
    for path in leftovers:
        path.write_bytes(b"half of a target")
    assert storage.remove_leftovers() == 2
    assert temp_files(tmp_path) == [] and storage.read_bytes("targets/t/s/c.png") == b"kept"


def test_a_log_on_a_full_disk_stops_quietly(capfd):
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    handler = RunLogHandler("/dev/full")
    log = logging.getLogger("tests.full_disk")
    log.addHandler(handler)
    try:
        for i in range(50):
            log.warning("record %d", i)
    finally:
        log.removeHandler(handler)
    handler.close()
    assert handler.failure is not None and NO_SPACE in handler.failure
    assert capfd.readouterr().err == ""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only: skipped where it cannot be mounted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk with one file, then shrink it until `leave` bytes are free."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def test_a_disk_full_mid_run_is_one_error_line_and_the_rerun_heals(
    ray_cluster, tmp_path, small_disk
):
    """As a user runs it (joining this cluster, as `ray job submit` would), with the run and
    its log on a disk that fills up after the job checked it can write there."""
    contents, styles = write_inputs(tmp_path, 2, 2)
    out = small_disk / "run"
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(out), *FAST_TEACHER]
    env = {"RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    filler = fill(small_disk, leave=16 * 1024)

    result = run_job("generate", *args, "--tile", "1x1", env=env)

    assert result.returncode == 2, result.stderr
    lines = printed_lines(result.stderr)
    assert lines[-1].startswith("error: ") and NO_SPACE in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    # before it, the progress bar and at most a warning that the log stops early
    noise = [x for x in lines[:-1] if not x.startswith(("generate:", "WARNING common.run_log"))]
    assert noise == [], result.stderr

    filler.unlink()
    (out / "targets").mkdir(parents=True, exist_ok=True)
    (out / "targets" / f"x.png.tmp-{uuid.uuid4().hex}").write_bytes(b"what a killed write left")
    result = run_job("generate", *args, env=env)
    assert result.returncode == 0, result.stderr
    check_exactly_once(Storage(str(out)), 4)
    assert temp_files(out) == []
