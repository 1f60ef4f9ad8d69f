"""Storage over a local directory, memory:// and a real S3 server; fast one-line failures."""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from common.errors import UnreadableInput, UserError
from common.run_log import run_log
from common.storage import Storage, StorageOptions, open_fs, read_url, redact
from tests.support.network import free_port


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A Storage whose root is a not-yet-existing prefix on each backend."""
    if request.param == "local":
        return Storage(str(tmp_path / "run"))
    if request.param == "memory":
        return Storage(f"{request.getfixturevalue('memory_root')}/run")
    bucket, options = request.getfixturevalue("s3_bucket")
    return Storage(f"{bucket}/run", options)


def test_round_trip(storage: Storage) -> None:
    assert storage.list("") == []
    assert not storage.exists("targets/s1/c1.png")
    storage.write_bytes("targets/s1/c1.png", b"first")
    storage.write_bytes("targets/s1/c1.png", b"second")  # overwrite in place
    storage.write_bytes("targets/s2/c1.png", b"other")
    storage.write_bytes("run.json", b"{}")
    assert storage.read_bytes("targets/s1/c1.png") == b"second"
    assert storage.exists("targets/s1/c1.png")
    assert storage.list("targets") == ["targets/s1/c1.png", "targets/s2/c1.png"]
    assert storage.list("") == ["run.json", "targets/s1/c1.png", "targets/s2/c1.png"]
    assert storage.list("manifests") == []
    assert storage.url("run.json") == f"{storage.root}/run.json"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("targets/s1/missing.png")


def test_check_writable_leaves_nothing_behind(storage: Storage) -> None:
    storage.check_writable()
    assert storage.list("") == []


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    Storage(str(tmp_path)).write_bytes("a/b.png", b"x")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.png"]


def test_read_url_of_a_missing_object_is_a_user_error(memory_root: str) -> None:
    with pytest.raises(UserError, match="no such file"):
        read_url(f"{memory_root}/nothing.png", None)


def test_read_url_names_why_a_local_file_cannot_be_read(tmp_path: Path) -> None:
    """A symlink loop, a folder or a socket is the input's fault: recorded, not a job failure."""
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "folder.png").mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket.png"))
    expected = {
        "loop.png": "Too many levels of symbolic links (ELOOP)",
        "folder.png": "Is a directory (EISDIR)",
        "socket.png": "No such device or address (ENXIO)",
    }
    for name, reason in expected.items():
        with pytest.raises(UnreadableInput) as caught:
            read_url(str(tmp_path / name), None)
        assert str(caught.value) == f"cannot read {tmp_path / name}: {reason}"


def assert_fails_fast(storage: Storage, expected: str) -> None:
    """check_writable raises one line naming the root and `expected`, within seconds."""
    start = time.monotonic()
    with pytest.raises(UserError) as caught:
        storage.check_writable()
    message = str(caught.value)
    assert time.monotonic() - start < 5
    assert "\n" not in message and storage.root in message and expected in message


def test_missing_bucket_fails_with_one_line(s3_bucket: tuple[str, dict[str, Any]]) -> None:
    name = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    assert_fails_fast(Storage(f"s3://{name}/run", s3_bucket[1]), "bucket does not exist")


def test_unreachable_endpoint_fails_with_one_line(s3_bucket: tuple[str, dict[str, Any]]) -> None:
    options = s3_bucket[1]
    options["client_kwargs"]["endpoint_url"] = f"http://127.0.0.1:{free_port()}"
    options["config_kwargs"] = {"connect_timeout": 1, "retries": {"max_attempts": 1}}
    assert_fails_fast(Storage("s3://bucket/run", options), "Could not connect")


def test_redact_hides_secrets_at_any_depth() -> None:
    options: dict[str, Any] = {
        "key": "AKIAEXAMPLE",
        "secret": "s3cr3t",
        "anon": False,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "aws_session_token": "T0KEN"},
    }
    safe = redact(options)
    text = json.dumps(safe)
    assert "AKIAEXAMPLE" not in text and "s3cr3t" not in text and "T0KEN" not in text
    assert safe["anon"] is False
    assert safe["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert options["secret"] == "s3cr3t"  # the caller's options are untouched


def test_storage_options_are_parsed_once_and_applied_to_object_store_urls_only(
    tmp_path: Path,
) -> None:
    options = StorageOptions(
        ("client_kwargs.endpoint_url=http://127.0.0.1:9", "anon=true", "secret=s3cr3t")
    )
    assert options == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
        "anon": True,
        "secret": "s3cr3t",
    }
    assert "s3cr3t" not in repr(options)  # Ray shows the configs it ships
    (tmp_path / "a.txt").write_text("local")
    assert read_url(str(tmp_path / "a.txt"), options) == b"local"  # local: no s3 options
    fs, _ = open_fs("s3://bucket/key", options)  # builds a client, connects to nothing
    assert fs.client_kwargs == {"endpoint_url": "http://127.0.0.1:9"} and fs.anon
    with pytest.raises(UserError, match="key=value"):
        StorageOptions(("novalue",))


def test_ray_worker_writes_to_s3(ray_cluster: Any, s3_bucket: tuple[str, dict[str, Any]]) -> None:
    import ray

    def write_in_task(root: str, options: dict[str, Any]) -> str:
        # Defined here so Ray ships it by value; the worker imports `common` itself.
        storage = Storage(root, options)
        storage.write_bytes("from-worker.txt", b"hello")
        return storage.url("from-worker.txt")

    bucket, options = s3_bucket
    url = ray.get(ray.remote(write_in_task).remote(bucket, options), timeout=60)
    assert url == f"{bucket}/from-worker.txt"
    assert read_url(url, options) == b"hello"


def test_manifest_lines_name_their_teacher_and_old_lines_read_as_styleid(tmp_path: Path) -> None:
    from common.manifest import ManifestLine, manifest_parts, write_lines

    line = ManifestLine("c", "s", "ci", "si", "t.png", "train", "h", "sha", 1.0, teacher="lsast")
    storage = Storage(str(tmp_path))
    write_lines(storage, "manifests/h/part-a.jsonl", [line])
    assert manifest_parts(storage, "h") == {"manifests/h/part-a.jsonl": [line]}
    old = json.loads(storage.read_bytes("manifests/h/part-a.jsonl"))
    del old["teacher"]  # written before LSAST existed
    assert ManifestLine.from_json(json.dumps(old)).teacher == "styleid"
    with pytest.raises(ValueError):
        ManifestLine.from_json(json.dumps({**old, "extra": 1}))


class RefusingStorage(Storage):
    """An object store that takes no more writes (expired credentials, a full bucket)."""

    def write_bytes(self, key: str, data: bytes) -> None:
        raise RuntimeError("AccessDenied")


def test_a_run_log_holds_ray_and_project_records_and_never_fails_the_job(
    memory_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("ray"), "level", logging.INFO)
    # the module's own warnings, as a fresh process has its logger (enabled, WARNING up)
    warned = logging.handlers.BufferingHandler(capacity=10)
    module_logger = logging.getLogger("common.run_log")
    monkeypatch.setattr(module_logger, "disabled", False)
    monkeypatch.setattr(module_logger, "level", logging.WARNING)
    monkeypatch.setattr(module_logger, "handlers", [warned])
    storage = Storage(f"{memory_root}/run")
    with run_log(storage, "generate") as url:
        logging.getLogger("ray.data.some").info("a line of Ray Data")  # it does not propagate
        logging.getLogger("ray.train.some").info("a line of Ray Train")
        logging.getLogger("jobs.some").warning("a line of ours")
    (key,) = storage.list("logs")
    assert url == storage.url(key) and key.startswith("logs/generate-")
    text = storage.read_bytes(key).decode()
    for line in ("a line of Ray Data", "a line of Ray Train", "a line of ours"):
        assert line in text
    # an error inside the job is the job's; an upload refused afterwards is a warning
    refusing = RefusingStorage(f"{memory_root}/other")
    with pytest.raises(ValueError, match="the job's own"), run_log(refusing, "train-x"):
        raise ValueError("the job's own")
    (warning,) = [record.getMessage() for record in warned.buffer]
    assert "the job's log stays at" in warning and "AccessDenied" in warning
    for name in ("", "ray", "ray.data"):
        assert not [h for h in logging.getLogger(name).handlers if type(h) is logging.FileHandler]


def test_gs_urls_open_with_the_gcs_extra() -> None:
    """gs:// needs the `gcs` extra (gcsfs); no GCS server runs here, so only the backend and
    the URL's path are checked, and nothing is read."""
    fs, path = open_fs("gs://bucket/runs/r1", {"token": "anon"})
    assert "gs" in fs.protocol and path == "bucket/runs/r1"
