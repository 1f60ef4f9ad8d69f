"""Each job's log file in its run: `<run root>/logs/<job>-<UTC time>-<pid>.log`.

The console stays quiet (`common.cli`: Ray's console handlers print errors only unless
`--verbose`), so the file is where the rest goes: every record of this process's loggers from
INFO up, Ray's driver-side ones included. Ray's workers keep their own logs in Ray's session
folder (the line `connect_ray` prints names it). On a local root the file is written as the job
runs (`tail -f` works); on an object store it is uploaded every `UPLOAD_S` while the job runs
(so a killed driver's log is there, all but its last seconds) and when the job ends, failed or not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from common.errors import first_line
from common.storage import Storage

# Ray's own format (its LOGGER_FORMAT): `ray.init` sets it on every handler of the "ray"
# logger, this one included, so the whole file uses it
FORMAT = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"
UPLOAD_S = 15.0  # how often a log on an object store is uploaded while its job runs
# loggers whose records do not reach the root logger: Ray configures them not to propagate
OWN_HANDLERS = ("", "ray", "ray.data")

logger = logging.getLogger(__name__)


class RunLogHandler(logging.FileHandler):
    """The log file's handler. The file may lie on the storage whose failure ends the job (a
    full disk): then it stops at its first failed write, quietly, instead of printing a
    traceback for every later record and raising again on close, which buried the job's own
    one-line error under hundreds of lines. `failure` says why it stopped."""

    def __init__(self, path: str) -> None:
        super().__init__(path, encoding="utf-8")
        self.failure: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        self.failure = first_line(exc) if exc else "a write failed"

    def close(self) -> None:
        try:
            super().close()  # flushes what is buffered: on a full disk that fails too
        except OSError as exc:
            self.failure = self.failure or first_line(exc)


@contextlib.contextmanager
def run_log(storage: Storage, job: str) -> Iterator[str]:
    """Log into the run's `logs/` while the block runs; yields the log's URL. A log that cannot
    be uploaded stays in its temporary file, with a warning: never the job's error."""
    # the process id: two runs started in the same second keep a log each
    key = f"logs/{job}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}.log"
    path = storage.path(key)
    if not storage.is_local:  # uploaded at the end
        with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as file:
            path = file.name
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = RunLogHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    for name in OWN_HANDLERS:
        logging.getLogger(name).addHandler(handler)
    stop = threading.Event()
    uploads = threading.Thread(
        target=upload_every, args=(storage, key, path, stop), name="run-log-upload", daemon=True
    )
    if not storage.is_local:
        uploads.start()
    try:
        print(f"full log: {storage.url(key)}", flush=True)
        yield storage.url(key)
    finally:
        stop.set()
        for name in OWN_HANDLERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()
        if handler.failure:
            logger.warning("the job's log %s stops early: %s", storage.url(key), handler.failure)
        if not storage.is_local:
            uploads.join()
            try:
                storage.write_bytes(key, Path(path).read_bytes())
                os.remove(path)
            except Exception as exc:  # whatever the store says, the job's own outcome stands
                logger.warning("the job's log stays at %s: %s", path, first_line(exc))


def upload_every(storage: Storage, key: str, path: str, stop: threading.Event) -> None:
    """Upload the log file as it is now, every `UPLOAD_S` until `stop`: a driver killed
    outright (SIGKILL, a lost node) runs no cleanup, yet its log is in the store. A failed
    upload is retried at the next one; the last, at the end of the job, says if it fails."""
    while not stop.wait(UPLOAD_S):
        with contextlib.suppress(Exception):
            storage.write_bytes(key, Path(path).read_bytes())
