"""Object storage over fsspec: one root URL per run, keys are '/'-joined paths below it.

Every write is a single PUT of the whole object to its final key (S3 has no atomic rename);
on a local filesystem the bytes go to a temporary name first and are renamed into place, so a
killed process never leaves a half-written target that a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import uuid
from collections import UserDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import fsspec
import tyro
from fsspec.implementations.local import LocalFileSystem

from common.errors import MissingInput, UnreadableInput, UserError, first_line

log = logging.getLogger(__name__)
TEMP_MARK = ".tmp-"  # a local write's temporary name: <target>.tmp-<uuid>
SECRET_WORDS = ("secret", "token", "password", "key", "credential", "session")
# Local read errors that say the machine or a network filesystem is failing, not the file:
# a retry may succeed, so they fail the work unit instead of marking the input unusable.
TRANSIENT_ERRNOS = {
    errno.EINTR,
    errno.EAGAIN,
    errno.EIO,
    errno.ENOMEM,
    errno.EMFILE,
    errno.ENFILE,
    errno.ESTALE,
    errno.ENOTCONN,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENETDOWN,
}


def is_secret(key: str) -> bool:
    """Whether a storage option's key looks like a credential's."""
    return any(word in key.lower() for word in SECRET_WORDS)


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """Storage options safe to log or store: values of secret-looking keys are replaced."""
    return {
        name: redact(value) if isinstance(value, Mapping) else "***" if is_secret(name) else value
        for name, value in options.items()
    }


@dataclass(frozen=True, eq=False, repr=False)
class StorageOptions(UserDict):
    """How to reach object storage (s3:// and other fsspec URLs); local paths ignore these.
    Credentials are best left to the standard AWS chain: options show in `ray job list`."""

    # Parsed once here; `open_fs`, `read_url` and `Storage` apply them to object-store URLs
    # only, and the repr hides secrets (Ray shows configs).

    storage_option: Annotated[
        tuple[str, ...], tyro.conf.UseAppendAction, tyro.conf.arg(metavar="K=V")
    ] = ()
    """fsspec option for object-store URLs, e.g. client_kwargs.endpoint_url=http://host:9000"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", {})  # not a field: tyro would reset it to its default
        for pair in self.storage_option:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UserError(f"--storage-option expects key=value, got {pair!r}")
            target = self.data
            *parents, leaf = key.split(".")
            for parent in parents:
                target = target.setdefault(parent, {})
                if not isinstance(target, dict):
                    raise UserError(f"--storage-option {key!r} conflicts with an earlier option")
            # mostly strings; booleans and integers are given their type
            scalar = int(value) if value.lstrip("-").isdigit() else value
            target[leaf] = {"true": True, "false": False}.get(value.lower(), scalar)
            if is_secret(leaf):
                log.warning("--storage-option %s: a secret here shows in `ray job list`", leaf)

    def __repr__(self) -> str:
        return f"StorageOptions({redact(self.data)})"


def is_local(url: str) -> bool:
    """Local paths take no storage options (those are for the object store)."""
    return "://" not in url or url.startswith("file://")


# `ray job submit --working-dir .` runs the driver in Ray's unpacked copy of the upload,
# .../runtime_resources/working_dir_files/_ray_pkg_<hash>/, which goes with the Ray session.
RAY_PACKAGE_PREFIX = "_ray_pkg_"


def absolute_url(url: str) -> str:
    """Local paths made absolute (Ray workers run in other working directories); URLs as given.

    A relative path in a job submitted with `--working-dir` names a file of the submitter's
    checkout; made absolute here it would point into Ray's temporary copy of the upload, and
    be recorded so in run.json and manifests where no later job can read it: a `UserError`.
    """
    if not is_local(url):
        return url
    local = os.path.expanduser(url.removeprefix("file://"))
    cwd = os.getcwd()
    if not os.path.isabs(local) and any(
        part.startswith(RAY_PACKAGE_PREFIX) for part in cwd.split(os.sep)
    ):
        raise UserError(
            f"relative path {url!r} would be read from this Ray job's temporary copy of its "
            "--working-dir, which later jobs cannot read; give an absolute path that every "
            "node can read, or an object-store URL (s3://..., gs://...)"
        )
    return os.path.abspath(local)


def open_fs(url: str, options: Mapping[str, Any] | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Filesystem and path for a URL, with the storage `options` unless it is local (those are
    for the object store); an unknown protocol or missing backend is a `UserError`. `options`
    has no default, so that no caller can drop the run's options by forgetting them."""
    if not url or not isinstance(url, str):
        raise UserError(f"expected a path or URL, got {url!r}")
    try:
        return fsspec.core.url_to_fs(url, **({} if is_local(url) else dict(options or {})))
    except (ValueError, ImportError) as exc:
        raise UserError(f"cannot open {url!r}: {exc}") from None


def read_url(url: str, options: Mapping[str, Any] | None) -> bytes:
    """Whole object at a URL, opened with the run's storage `options` (as `open_fs`); every
    failure is a `UserError`.

    A missing object is a `MissingInput`; a local file the system refuses to read (permission,
    symlink loop, a directory, a socket) an `UnreadableInput` naming the errno. Anything else
    (an unreachable store, throttling, expired credentials) is about the storage, not the
    input, and stays a plain `UserError`.
    """
    fs, path = open_fs(url, options)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise MissingInput(f"no such file: {url}") from None
    except OSError as exc:
        if is_local(url) and exc.errno is not None and exc.errno not in TRANSIENT_ERRNOS:
            reason = f"{exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)})"
            raise UnreadableInput(f"cannot read {url}: {reason}") from None
        raise UserError(f"cannot read {url}: {first_line(exc)}") from None
    except ValueError as exc:
        raise UserError(f"cannot read {url}: {first_line(exc)}") from None


def file_storage(url: str, options: Mapping[str, Any] | None) -> tuple[Storage, str]:
    """The storage of the folder holding the file at `url`, and the file's name: how a command
    writes one output file of the user's naming through `Storage`'s checked writes."""
    folder, name = posixpath.split(url)
    return Storage(folder or ".", options), name


class Storage:
    """The output root of a run: read, write, test and list objects by key."""

    def __init__(self, root: str, options: Mapping[str, Any] | None = None) -> None:
        # the run's options, for this root and any other URL read beside it
        self.options: Mapping[str, Any] = options or {}
        self.fs, path = open_fs(root, self.options)
        self.root_path = path.rstrip("/")
        self.root = absolute_url(root).rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path(self, key: str) -> str:
        """Filesystem path of a key."""
        return posixpath.join(self.root_path, key) if key else self.root_path

    def url(self, key: str) -> str:
        """Full URL of a key, for manifests and messages."""
        return f"{self.root}/{key}" if key else self.root

    def check_writable(self) -> None:
        """Fail fast, in one line, when the root cannot be written (bad bucket, no credentials)."""
        probe = self.path(f".probe-{uuid.uuid4().hex}")
        try:
            self._put(probe, b"ok")
            self.fs.rm_file(probe)
        except Exception as exc:  # any backend error here means the root is unusable
            raise UserError(f"cannot write to {self.root}: {first_line(exc)}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` in one piece (temp + rename on local disks)."""
        try:
            self._put(self.path(key), data)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot write {self.url(key)}: {first_line(exc)}") from None

    def create(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` only if nothing is there (an exclusive write: S3's
        If-None-Match, a hard link on a local disk); whether it did."""
        path = self.path(key)
        try:
            if self.is_local:  # whole bytes under a temporary name, then a link that refuses
                self._put(temp := f"{path}{TEMP_MARK}{uuid.uuid4().hex}", data)
                try:
                    os.link(temp, path)
                finally:
                    os.remove(temp)
            else:
                self.fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot write {self.url(key)}: {first_line(exc)}") from None
        return True

    def _put(self, target: str, data: bytes) -> None:
        if not self.is_local:
            self.fs.pipe_file(target, data)
            return
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        temp = f"{target}{TEMP_MARK}{uuid.uuid4().hex}"
        try:
            self.fs.pipe_file(temp, data)
            self.fs.mv(temp, target)
        except BaseException:  # a full disk leaves part of the bytes: never keep them
            with contextlib.suppress(OSError):
                self.fs.rm_file(temp)
            raise

    def remove_leftovers(self) -> int:
        """Delete the temporary files of writes that a killed process never finished (on a
        local root; an object store has none), and say how many: no reader trusts them, but
        nothing else would ever remove them. Only while no other run writes here (a lease)."""
        if not self.is_local:
            return 0
        try:
            found = self.fs.find(self.root_path)
        except FileNotFoundError:
            return 0
        leftovers = [path for path in found if TEMP_MARK in posixpath.basename(path)]
        for path in leftovers:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)
        return len(leftovers)

    def delete(self, key: str) -> None:
        """Remove one object; one that is already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        """Bytes of a key; a missing key raises `FileNotFoundError` so callers can tell."""
        return self.fs.cat_file(self.path(key))

    def exists(self, key: str) -> bool:
        """Whether an object exists (fresh answer, not a listing cache)."""
        self.fs.invalidate_cache(posixpath.dirname(self.path(key)))
        return self.fs.exists(self.path(key))

    def list(self, prefix: str) -> list[str]:
        """Keys of all objects below `prefix` (recursive), sorted; empty if the prefix is absent."""
        base = self.path(prefix)
        self.fs.invalidate_cache(base)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        start = len(self.root_path) + 1
        keys = (p[start:] for p in found)
        return sorted(k for k in keys if TEMP_MARK not in posixpath.basename(k))
