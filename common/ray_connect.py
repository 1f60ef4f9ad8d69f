"""How every job joins Ray: the cluster in RAY_ADDRESS, or a private local one.

`ray job submit` sets RAY_ADDRESS for the driver. Without it we start a fresh local cluster on
127.0.0.1 rather than let `ray.init()` look for one: a stale address file left by an old
`ray start` makes that search hang, and a local run should not join someone else's cluster.
It starts no idle workers (`LOCAL_RAY`).

Quiet unless `--verbose` (`common.cli.verbose`): Ray's own loggers print only errors, in the
driver and in every worker, and Ray Data's console lines (its errors too) stay in its log file;
what workers print of their own (a training epoch, a skipped input) still reaches the driver,
Ray's C++ output does not (`common.ray_console`). One line names the folder of Ray's logs.
Ray Train reaches a run's storage through `ray_filesystem`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pyarrow.fs
import ray
import ray.data  # configures Ray Data's loggers, which `connect_ray` quiets
from fsspec.implementations.local import LocalFileSystem

from common.cli import console_handlers, verbose
from common.errors import UserError, first_line
from common.ray_console import native_lines_streamed_to_log, native_stderr_to_log
from common.storage import Storage

# A local Ray prestarts one idle worker per CPU for its first driver, with no runtime_env: a
# job's workers all carry its `worker_setup` hook, so none of those is ever used (each spends
# ~0.7 CPU-second starting and holds ~80 MB RSS until Ray's idle timeout). Without them a job
# on the samples took 1.3 s (6.5%) less on 2 cores.
LOCAL_RAY = {
    "_node_ip_address": "127.0.0.1",
    "include_dashboard": False,
    "_system_config": {"prestart_worker_first_driver": False},
}


def connect_ray() -> None:
    """Initialise Ray once per process (a no-op when it already is, e.g. in tests)."""
    if ray.is_initialized():
        return

    quiet = not verbose()
    options = {
        "logging_level": logging.INFO,  # for the run's log file; the console is `run_cli`'s
        "runtime_env": {"worker_process_setup_hook": worker_setup(quiet)},
    }
    if not (address := os.environ.get("RAY_ADDRESS")):
        address = "local"
        options |= LOCAL_RAY
    if quiet:  # the C++ warnings of the driver's own core worker go to the run's log
        native_stderr_to_log()
    try:
        context = ray.init(address, **options)
    except Exception as exc:  # Ray says "could not start" as bare Exceptions and ConnectionErrors
        raise UserError(start_failure(address, exc)) from None
    if quiet:
        native_lines_streamed_to_log()
        # Ray Data prints a failed work unit's whole remote traceback, ~200 lines, before the
        # job's own `error:` line names its cause: the console gets none, the log file all
        for handler in console_handlers("ray.data"):
            handler.setLevel(logging.CRITICAL)
        print(f"Ray's logs: {context.address_info['session_dir']}/logs (--verbose prints them)")


def worker_setup(quiet: bool) -> Callable[[], None]:
    """Ray's `worker_process_setup_hook` for a job: it runs in each worker and actor at its start.

    Ray's state API finds its cluster by RAY_ADDRESS and fails where a machine runs several:
    without it, Ray Train's placement-group cleaner waits 10 s for a GCS on each check, and
    every training run ends 12 s late (and its placement-group cleaner dies with a traceback).
    `quiet`: nothing else quiets Ray's loggers in workers.
    """

    def setup_worker() -> None:
        """Defined in here so that it travels by value: a worker that cannot import it (other
        code than the driver's) would fail to start."""
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        if quiet:  # the cleaner warns each second
            logging.getLogger("ray").setLevel(logging.ERROR)
            # Ray Train names the logger of its "Reporting training result ..." line, one per
            # epoch, by its file path: outside "ray", and not one RunConfig's logging_config sets
            module = os.path.join("train", "v2", "_internal", "execution", "context.py")
            logging.getLogger(os.path.join(os.path.dirname(ray.__file__), module)).setLevel(
                logging.ERROR
            )

    return setup_worker


def start_failure(address: str, exc: BaseException) -> str:
    """One line for a Ray that would not start or let this job join: the cause sits deep in
    the exceptions' chain, under a traceback of Ray's internals."""
    causes, seen = [], exc
    while seen is not None and len(causes) < 10:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(cause) for cause in causes)
    if "InvalidAuthToken" in text:
        return (
            f"the Ray cluster at {address} refused this job's auth token (InvalidAuthToken): "
            "give the cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        )
    if "timed out during startup" in text:
        return (
            "the local Ray node did not start in time (its processes did not register within "
            "Ray's 30 s, as on a heavily loaded machine): run again, or start Ray once with "
            "`ray start --head` and pass its address in RAY_ADDRESS"
        )
    where = "start a local Ray" if address == "local" else f"join the Ray cluster at {address}"
    return f"cannot {where}: {first_line(exc)}"


def ray_filesystem(storage: Storage) -> pyarrow.fs.FileSystem | None:
    """The storage's filesystem as Ray Train takes it (None: Ray's own local one), so that
    Ray Train writes and reads a run folder with the run's storage options."""
    if isinstance(storage.fs, LocalFileSystem):
        return None
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(storage.fs))
