"""Shared fixtures: a real S3 server (moto) on 127.0.0.1 and a real local Ray cluster.

Tests that use them are marked `s3` / `ray` automatically, so `-m "not ray"` skips Ray.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import FAKE_KEY, FAKE_SECRET, REGION, use_fake_aws

# Set before anything imports torch: the suite's two processes share two cores with the Ray
# processes and jobs they start, and OpenMP threads that busy-wait for each other on a core
# that is busy elsewhere ran two compute-bound test files 5x slower than one thread each.
# It reaches every job and Ray cluster a test starts through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Two of Ray Train's own services that a test machine has no use for: the watcher of node
# preemption (an actor, one more process per run) and the metrics its controller and workers
# export. Each run's controller reads them from the environment of the driver that starts it.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
# The controller looks at its workers every 0.5 s instead of every 2 s: a run's start, end and
# lost workers are seen sooner (a 4-epoch, 2-worker fit of the tiny student on a 2-core AMD
# EPYC: 21.5 s instead of 25.3 s, the same CPU time), where a test waits on nothing else.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

REPO_ROOT = Path(__file__).resolve().parents[1]


RAY_FOLDER = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Ray's session folders (logs and sockets, one for every cluster a test starts) go to a
    folder of this run's, not /tmp/ray, where Ray never removes them. Set in the main process
    before xdist starts its workers: they, and the clusters and jobs they start, inherit it."""
    if "RAY_TMPDIR" not in os.environ:
        config.stash[RAY_FOLDER] = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-tests-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing run's Ray folder goes, as its test folders do; a failing run's stays."""
    folder = session.config.stash.get(RAY_FOLDER, None)
    if folder and exitstatus == 0:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the tests in reverse order (every test must pass alone and in any order)",
    )


# The files that take longest, longest first (each keeps to one process under `--dist loadfile`,
# and `make test` keeps xdist from re-sorting files by their number of tests): the two processes
# take them in turn and end together, instead of one running a long file alone at the end.
# Ranked by their time in a full run on 2 cores; the rest follow in collection order.
SLOWEST_FILES = (
    "test_generate_job.py",
    "test_train_job.py",
    "test_pipeline.py",
    "test_ray_job_submit.py",
    "test_train_faults.py",
    "test_evaluate_memory.py",
    "test_real_weights.py",
    "test_reliability_ray_start.py",
    "test_node_fit.py",
    "test_evaluate_side_by_side.py",
    "test_serving_http.py",
    "test_train_microast.py",
    "test_reliability_lease.py",
    "test_serving_cli.py",
    "test_learn_style.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the slowest files first; mark tests by the servers they start, so they can be
    selected or skipped with -m; reverse the order with --reverse."""
    rank = {name: place for place, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
    if config.getoption("--reverse"):
        items.reverse()
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & {"s3_server", "s3_bucket"}:
            item.add_marker(pytest.mark.s3)
        if "ray_cluster" in fixtures:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server on a free 127.0.0.1 port; fake AWS env while it runs."""
    with pytest.MonkeyPatch.context() as env:
        use_fake_aws(env)
        # where moto's request recorder (`s3_puts`) keeps its log: read when moto is imported
        recording = tmp_path_factory.mktemp("moto") / "requests.jsonl"
        env.setenv("MOTO_RECORDER_FILEPATH", str(recording))
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A new empty bucket: ("s3://name", s3fs storage options); the options are the test's own."""
    import boto3
    import s3fs

    # s3fs caches filesystems (and their listings) by options; no test may see another's.
    s3fs.S3FileSystem.clear_instance_cache()
    name = f"test-{uuid.uuid4().hex[:16]}"
    options = {
        "key": FAKE_KEY,
        "secret": FAKE_SECRET,
        "client_kwargs": {"endpoint_url": s3_server, "region_name": REGION},
    }
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_SECRET,
    ).create_bucket(Bucket=name)
    yield f"s3://{name}", options
    s3fs.S3FileSystem.clear_instance_cache()


def parse_recording(text: str) -> list[dict[str, Any]]:
    """The requests in moto's recording. Its server threads append each request as JSON, then
    a newline in a second write, so lines of concurrent requests may end up joined: the
    objects are read one after another, whatever whitespace lies between them."""
    space, decoder, entries = re.compile(r"\s*"), json.JSONDecoder(), []
    at = space.match(text).end()
    while at < len(text):
        entry, end = decoder.raw_decode(text, at)
        entries.append(entry)
        at = space.match(text, end).end()
    return entries


@pytest.fixture
def s3_puts(s3_server: str) -> Iterator[Callable[[], Counter[str]]]:
    """Counts the PUT requests the S3 server received since the test began, by path
    ("/bucket/key"), from any process (a Ray actor's too), with moto's request recorder."""

    def recorder(action: str) -> str:
        url = f"{s3_server}/moto-api/recorder/{action}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()

    def puts() -> Counter[str]:
        entries = parse_recording(recorder("download-recording"))
        paths = (urllib.parse.urlsplit(e["url"]).path for e in entries if e["method"] == "PUT")
        return Counter(urllib.parse.unquote(path) for path in paths)

    recorder("reset-recording")
    recorder("start-recording")
    yield puts
    recorder("stop-recording")


@pytest.fixture(scope="session")
def ray_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Hugging Face cache (`HF_HOME`) that Ray workers read Hub ids from, offline: empty
    until a test lays a model out in it (`tests.support.sd_folder.hub_cache`)."""
    return tmp_path_factory.mktemp("ray-hf-home")


@pytest.fixture(scope="session")
def ray_cluster(ray_hf_home: Path) -> Iterator[Any]:
    """A fresh local Ray cluster as a job starts one (`LOCAL_RAY`: no dashboard, no idle
    workers), with 4 CPUs and GPUs as detected; yields its context.

    address="local" never joins a cluster already running on this machine; workers get the
    repository on their path so they import the project as the tests do, and read Hub ids
    from `ray_hf_home` only (`HF_HUB_OFFLINE=1`), as on an air-gapped cluster.

    This process prints none of its workers' and raylet's lines (`log_to_driver=False`; Ray's
    session logs keep them): Ray streams them on its own schedule, and one arriving while
    `run_in_process` captures a command's stderr would read as the command's (the raylet warns
    every 10 s of a disk over 95% full). A job run as a process prints its own.
    """
    import ray

    from common.ray_connect import LOCAL_RAY, worker_setup

    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, "HF_HOME": str(ray_hf_home), "HF_HUB_OFFLINE": "1"}
    context = ray.init(
        address="local",
        **LOCAL_RAY,
        num_cpus=4,
        object_store_memory=1 << 30,
        log_to_driver=False,
        # the jobs' own hook: Ray Train's placement-group cleaner finds this cluster
        runtime_env={"env_vars": env, "worker_process_setup_hook": worker_setup(quiet=False)},
    )
    try:
        yield context
    finally:
        ray.shutdown()
