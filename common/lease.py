"""One run at a time per output root: `<root>/lease.json`, held by the run that writes there.

Two `jobs.generate` runs on one root (a job re-submitted while the first still runs) would both
compute and store every pair, and both count it as theirs. The lease is created by an exclusive
write (S3's If-None-Match, a hard link on a local disk), so one run gets it; the holder renews its
heartbeat in the background, and another run waits, saying for whom, until the lease is released
or dead, then takes it: dead is a heartbeat older than `stale_s` (clocks of a cluster's machines
agree to well within that), or at once a holder on this machine whose process is gone. The
waiting run plans after it holds the lease, so it finds what the first finished and makes only
the rest.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from types import TracebackType

from common.errors import first_line
from common.storage import Storage

log = logging.getLogger(__name__)
LEASE_KEY = "lease.json"
HEARTBEAT_S = 10.0
STALE_S = 120.0
POLL_S = 2.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, and when it last said it was alive (`time.time()`)."""

    run_id: str
    job: str
    host: str
    pid: int
    heartbeat: float

    @classmethod
    def parse(cls, data: bytes) -> Holder:
        """The holder a lease names; a damaged one (a write cut short) is long dead."""
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return cls("unknown", "unknown", "unknown", 0, 0.0)

    def gone(self) -> bool:
        """Whether its process is known to be gone: it ran on this machine and is not running."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's live process
            return False
        return False

    def describe(self, now: float) -> str:
        return (
            f"{self.job} run {self.run_id} (pid {self.pid} on {self.host}, alive "
            f"{max(now - self.heartbeat, 0):.0f} s ago)"
        )


class OutputLease:
    """`with OutputLease(storage, "generate"):` holds the root's lease for the block, waiting
    for another run's first; released at the end, failed or not."""

    def __init__(
        self,
        storage: Storage,
        job: str,
        stale_s: float = STALE_S,
        heartbeat_s: float = HEARTBEAT_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.storage, self.job = storage, job
        self.stale_s, self.heartbeat_s, self.poll_s = stale_s, heartbeat_s, poll_s
        self.run_id = uuid.uuid4().hex[:12]
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._renew, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> OutputLease:
        self.acquire()
        self._beat.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._beat.join()
        try:
            if self._holder().run_id == self.run_id:
                self.storage.delete(LEASE_KEY)
        except Exception as error:  # the job's own outcome stands; the lease goes stale
            log.warning("cannot release %s: %s", self.storage.url(LEASE_KEY), first_line(error))

    def acquire(self) -> None:
        """Create the lease; while another live run holds it, wait (one line says for whom)."""
        waited = False
        while not self.storage.create(LEASE_KEY, self._body()):
            try:
                holder = self._holder()
            except FileNotFoundError:  # released just now
                continue
            now = time.time()
            if holder.gone() or now - holder.heartbeat > self.stale_s:
                print(f"taking over the output's lease from {holder.describe(now)}", flush=True)
                self.storage.delete(LEASE_KEY)
                continue
            if not waited:
                print(
                    f"waiting for {holder.describe(now)}, which writes to {self.storage.root} "
                    f"(its lease is taken over if it stops for {self.stale_s:.0f} s)",
                    flush=True,
                )
                waited = True
            time.sleep(self.poll_s)

    def _holder(self) -> Holder:
        return Holder.parse(self.storage.read_bytes(LEASE_KEY))

    def _body(self) -> bytes:
        holder = Holder(self.run_id, self.job, socket.gethostname(), os.getpid(), time.time())
        return json.dumps(asdict(holder)).encode()

    def _renew(self) -> None:
        """The heartbeat: rewrite the lease every `heartbeat_s` while it is still ours."""
        while not self._stop.wait(self.heartbeat_s):
            try:
                if (holder := self._holder()).run_id != self.run_id:
                    log.warning("lost the output's lease to %s", holder.describe(time.time()))
                    return
                self.storage.write_bytes(LEASE_KEY, self._body())
            except Exception as exc:  # a store that blips: the next beat tries again
                log.warning("cannot renew %s: %s", self.storage.url(LEASE_KEY), first_line(exc))
