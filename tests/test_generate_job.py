"""`jobs.generate` on a real local Ray cluster: every pair exactly once, on disk and on S3,
through a killed actor and a restarted driver, with bad inputs reported and nothing lost."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
import ray
import torch
from PIL import Image
from ray._private import ray_constants

from common import ray_connect
from common.errors import UserError
from common.ids import content_id
from common.images import center_crop_resize, png_bytes
from common.inputs import expand_images
from common.lease import LEASE_KEY
from common.manifest import manifest_key, manifest_parts, read_manifest, target_key
from common.planning import assign_split
from common.storage import Storage
from jobs import generate, train
from student.dataset import TripleDataset
from teacher_workers.lsast.generator import generator_bytes, new_generator
from teacher_workers.models import load_teacher
from tests.support.cli import printed_lines, run_in_process, run_job
from tests.support.generation_helpers import (
    FAST_TEACHER,
    check_exactly_once,
    check_unchanged,
    run_json,
    target_times,
    write_inputs,
    write_prompt_files,
)
from tests.support.train_helpers import SIZE, fit, history, small_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


def job_args(
    contents: Path, styles: Path, out: str, *extra: str, workers: str = "1:1"
) -> list[str]:
    """The job's arguments; one actor unless the test is about several (each loads a teacher)."""
    return [
        "--content",
        str(contents),
        "--styles",
        str(styles),
        "--out",
        out,
        *FAST_TEACHER,
        "--workers",
        workers,
        *extra,
    ]


def summary_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The closing count line the job printed since the last call."""
    return next(x for x in capsys.readouterr().out.splitlines() if x.startswith("pairs planned"))


def add_unreadable_inputs(contents: Path) -> dict[str, str]:
    """Inputs that cannot be read at all in `contents`: a symlink loop, a socket and (unless
    this is root, who reads a file whatever its mode) a file no one may read; each one's
    reason, as the failures record it."""
    (contents / "loop.png").symlink_to("loop.png")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(contents / "socket.png"))
    reasons = {
        "loop.png": "Too many levels of symbolic links (ELOOP)",
        "socket.png": "No such device or address (ENXIO)",
    }
    if os.geteuid() != 0:
        (contents / "locked.png").write_bytes(b"x")
        (contents / "locked.png").chmod(0)
        reasons["locked.png"] = "Permission denied (EACCES)"
    return {name: f"cannot read {contents / name}: {reason}" for name, reason in reasons.items()}


def recorded_failures(storage: Storage) -> dict[str, str]:
    """The failures' records: each input's file name and the reason given."""
    records = (
        json.loads(line)
        for key in storage.list("failures")
        if key.endswith(".jsonl")
        for line in storage.read_bytes(key).decode().splitlines()
    )
    return {Path(record["url"]).name: record["reason"] for record in records}


def test_two_actors_write_every_pair_once_and_record_each_bad_input_with_its_reason(
    ray_cluster, tmp_path, capsys
):
    """A corrupt image and inputs that cannot be read at all are recorded, and the job
    finishes the rest."""
    contents, styles = write_inputs(tmp_path, 3, 2, corrupt=True)
    unreadable = add_unreadable_inputs(contents)
    bad = 2 * (1 + len(unreadable))  # pairs: the corrupt content's and the unreadable ones'
    out = tmp_path / "run"
    assert generate.main(job_args(contents, styles, str(out), "--tile", "2x1", workers="2:2")) == 0
    storage = Storage(str(out))
    lines = check_exactly_once(storage, 3 * 2)
    assert {line.split for line in lines} <= {"train", "val"}
    failures = recorded_failures(storage)
    assert "not a readable image" in failures.pop("broken.png")
    assert failures == unreadable
    assert run_json(storage)["teacher_hash"] == lines[0].teacher_hash
    assert summary_line(capsys).startswith(
        f"pairs planned {6 + bad}, written 6, already done 0, failed now {bad};"
    )
    # the same job again writes nothing and tries the bad inputs again
    before = target_times(out)
    assert generate.main(job_args(contents, styles, str(out), "--tile", "2x1", workers="2:2")) == 0
    check_unchanged(out, before)
    check_exactly_once(storage, 3 * 2)
    assert summary_line(capsys).startswith(
        f"pairs planned {6 + bad}, written 0, already done 6, failed now {bad};"
    )
    assert set(recorded_failures(storage)) == {"broken.png", *unreadable}


def test_a_restored_input_is_generated_and_new_inputs_add_no_duplicate_lines(
    ray_cluster, tmp_path, capsys
):
    contents, styles = write_inputs(tmp_path, 2, 2)
    (contents / "gone.png").symlink_to(tmp_path / "restored.png")  # dangling: a missing input
    out = tmp_path / "run"
    args = job_args(contents, styles, str(out), "--tile", "2x2")
    assert generate.main(args) == 0
    assert summary_line(capsys).startswith(
        "pairs planned 6, written 4, already done 0, failed now 2;"
    )
    storage = Storage(str(out))
    assert "no such file" in storage.read_bytes(storage.list("failures")[0]).decode()
    # the input comes back, and one more content and one more style join the folders
    Image.open(contents / "c0.png").rotate(90).save(tmp_path / "restored.png")
    Image.open(contents / "c1.png").rotate(90).save(contents / "c9.png")
    Image.open(styles / "s0.jpg").rotate(90).save(styles / "s9.jpg")
    before = target_times(out)
    assert generate.main(args) == 0
    assert summary_line(capsys).startswith(
        "pairs planned 12, written 8, already done 4, failed now 0;"
    )
    check_exactly_once(storage, 12)  # every pair listed once, though new inputs re-cut the tiles
    check_unchanged(out, before)
    assert storage.list("failures") == []  # the restored input's record is gone


def test_a_failed_work_unit_is_one_line_naming_its_cause_without_ray_noise(ray_cluster, tmp_path):
    """As a user runs it (joining this cluster, as `ray job submit` would): the remote
    traceback Ray Data logs stays in its log file, and the `error:` line names the cause."""
    contents, styles = write_inputs(tmp_path, 1, 1)
    out = tmp_path / "run"
    out.mkdir()
    (out / "targets").write_text("a file where the targets folder goes: every write fails")
    address = {"RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    result = run_job("generate", *job_args(contents, styles, str(out)), env=address)
    assert result.returncode == 2
    lines = printed_lines(result.stderr)
    message = lines[-1]
    assert message.startswith(f"error: a work unit failed: UserError: cannot write {out}/targets/")
    assert "Not a directory" in message
    assert message.endswith(
        "; finished tiles are kept, run the same command again to retry the rest"
    )
    for noise in ("\x1b", "ray::", "actor_id"):
        assert noise not in message
    # before it, only the progress bar: none of Python's loggers or tracebacks
    assert [x for x in lines[:-1] if not x.startswith("generate:")] == [], result.stderr


def test_s3_output_works_the_same_and_keeps_credentials_out(
    ray_cluster, tmp_path, s3_bucket, s3_puts, capfd
):
    url, options = s3_bucket
    contents, styles = write_inputs(tmp_path, 2, 2)
    flags = [
        f"--storage-option=key={options['key']}",
        f"--storage-option=secret={options['secret']}",
        f"--storage-option=client_kwargs.endpoint_url={options['client_kwargs']['endpoint_url']}",
        "--storage-option=client_kwargs.region_name=us-east-1",
    ]
    assert generate.main(job_args(contents, styles, f"{url}/run", *flags)) == 0
    storage = Storage(f"{url}/run", options)
    check_exactly_once(storage, 4)
    logs = storage.list("logs")
    assert len(logs) == 1 and logs[0].startswith("logs/generate-")  # kept at the end
    # each object the job stored (targets, manifest part, run.json) in one PUT, and no other
    # PUT but the writability probe, the run's lease (released at its end) and its log
    # (uploaded as it grows): a target or part written twice shows here, bytes alike
    run_path = f"/{url.removeprefix('s3://')}/run/"
    counted = lambda k: ".probe-" not in k and k != LEASE_KEY and not k.startswith("logs/")  # noqa: E731
    puts = Counter({k.removeprefix(run_path): n for k, n in s3_puts().items()})
    assert Counter({k: n for k, n in puts.items() if counted(k)}) == Counter(
        filter(counted, storage.list(""))
    )
    stored = storage.read_bytes("run.json").decode() + "".join(
        storage.read_bytes(k).decode() for k in [*storage.list("manifests"), *logs]
    )
    printed = "".join(capfd.readouterr())
    for secret in (options["key"], options["secret"]):
        assert secret not in stored and secret not in printed


def raylet_pid() -> int:
    """The raylet of the test cluster: its children are this cluster's workers and actors."""
    node = ray._private.worker._global_node
    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


PY_SPY = Path(sys.executable).with_name("py-spy")
TILE_ID = re.compile(r'"tile_id": "([^"]+)"')


def stacks(pid: int) -> list[dict]:
    """Every thread's Python stack in a process, innermost frame first, each frame with its
    locals, as py-spy reads them from the process's memory (it needs ptrace rights); an
    `OSError` with py-spy's message when it cannot (as in a process still starting)."""
    if not PY_SPY.is_file():
        pytest.fail(f"py-spy is not installed beside the interpreter ({PY_SPY})")
    command = [str(PY_SPY), "dump", "--pid", str(pid), "--locals", "--json", "--nonblocking"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise OSError(f"py-spy cannot read process {pid}: {result.stderr.strip()[:500]}")
    return json.loads(result.stdout)


def tile_in_engine(threads: list[dict]) -> str | None:
    """The id of the tile an actor's engine is stylizing (a thread in `stylize_pairs` under
    `TileRunner.run`), read from the tile's JSON in `TileActor.__call__`; None when none is."""
    for thread in threads:
        frames = thread["frames"]
        names = [frame["name"] for frame in frames]
        if "TileRunner.run" in names and any(n.endswith(".stylize_pairs") for n in names):
            texts = [
                value["repr"]
                for frame in frames
                if frame["filename"].endswith("teacher_workers/actor.py")
                for value in frame.get("locals") or ()
                if value["name"] == "text"
            ]
            return TILE_ID.search(texts[0])[1]
    return None


def generation_actors() -> list[psutil.Process]:
    """The cluster's generation actor processes; one an earlier job left exiting may be gone,
    or a zombie, by the time it is asked for its command line."""
    actors = []
    for process in psutil.Process(raylet_pid()).children():
        with contextlib.suppress(psutil.NoSuchProcess):  # a zombie is one too
            if "TileActor" in " ".join(process.cmdline()):
                actors.append(process)
    return actors


def kill_inside_a_tile(driver: threading.Thread, deadline: float) -> str:
    """Kill a generation actor whose engine is in a tile; returns the tile's id. Each actor is
    stopped (SIGSTOP) while its stacks are read, so the tile seen is the tile killed. An actor
    py-spy cannot read (starting, or left exiting by an earlier job) is passed over, but the
    test fails if it reads none."""
    read, errors = 0, []
    while driver.is_alive() and time.monotonic() < deadline:
        for actor in generation_actors():
            tile_id = None
            try:
                actor.suspend()
                tile_id = tile_in_engine(stacks(actor.pid))
                read += 1
            except psutil.NoSuchProcess:
                continue
            except OSError as error:
                errors.append(str(error))
            finally:
                if tile_id is None:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        actor.resume()
            if tile_id is not None:
                actor.kill()
                return tile_id
        time.sleep(0.2)
    assert read, f"py-spy read no generation actor's stacks: {errors[-1] if errors else 'none'}"
    pytest.fail("no generation actor was seen inside a tile while the job ran")


def test_a_killed_actor_is_replaced_and_every_pair_is_written_once(ray_cluster, tmp_path):
    """An actor killed with a tile in its engine: the tile is redone, the targets stored before
    the kill are reused (not written again), and every pair is listed once. Each tile has one
    pair whose target is stored before the job, as a killed attempt leaves it."""
    contents, styles = write_inputs(tmp_path, 6, 2)
    out = tmp_path / "run"
    args = job_args(contents, styles, str(out), "--tile", "1x2", "--steps", "12", workers="2:2")
    result: dict[str, object] = {}
    driver = threading.Thread(target=lambda: result.setdefault("code", generate.main(args)))
    driver.start()
    storage = Storage(str(out))
    deadline = time.monotonic() + 240
    while not storage.exists("run.json") and time.monotonic() < deadline:
        time.sleep(0.05)
    # before the actors have loaded their teachers: the first style's targets are stored
    teacher_hash = run_json(storage)["teacher_hash"]
    style_id = content_id((styles / "s0.jpg").read_bytes())
    for content in contents.iterdir():
        key = target_key(teacher_hash, style_id, content_id(content.read_bytes()))
        storage.write_bytes(key, png_bytes(torch.zeros(3, 64, 64)))
    tile_id = kill_inside_a_tile(driver, deadline)
    killed_at = time.time_ns()
    stored = target_times(out)
    part = manifest_key(teacher_hash, tile_id)
    assert not storage.exists(part), "the killed tile was finished"
    driver.join(timeout=300)
    assert result.get("code") == 0
    check_exactly_once(storage, 12)
    check_unchanged(out, stored)
    # the killed tile was done again: its stored target reused, its other one made anew
    targets = {line.target for line in manifest_parts(storage, teacher_hash)[part]}
    reused = {key for key in targets if key in stored}
    assert len(reused) == 1, "the killed tile's stored target was not in its part"
    made = [target_times(out)[key] for key in targets - reused]
    assert len(made) == 1 and made[0] > killed_at, "the killed tile was not redone after the kill"


def test_a_driver_stopped_halfway_finishes_on_restart(ray_cluster, tmp_path):
    contents, styles = write_inputs(tmp_path, 6, 2)
    out = tmp_path / "run"
    args = job_args(contents, styles, str(out), "--tile", "1x1", "--steps", "6")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.address_info["gcs_address"]}
    driver = subprocess.Popen(
        [sys.executable, "-m", "jobs.generate", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    storage = Storage(str(out))
    deadline = time.monotonic() + 240
    while not storage.list("manifests") and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = len(read_manifest(storage))
    assert 0 < done_before < 12, "the driver should have been stopped halfway"
    stored = target_times(out)
    assert generate.main(args) == 0
    check_exactly_once(storage, 12)
    check_unchanged(out, stored)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--content", "nope", "error: content input"),
        ("--workers", "3:1", "error: --workers must be MIN:MAX with 1 <= MIN <= MAX, got 3:1"),
    ],
)
def test_a_wrong_input_url_or_pool_option_fails_fast_with_one_line(tmp_path, flag, value, message):
    contents, styles = write_inputs(tmp_path, 1, 1)
    args = job_args(contents, styles, str(tmp_path / "o"))
    if flag == "--content":
        args[args.index(flag) + 1] = str(tmp_path / value)
    else:
        args += [flag, value]
    result = run_in_process("generate", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_an_unknown_hub_model_is_one_line_before_ray(tmp_path):
    """In a new interpreter: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when imported.
    Offline, the id is looked up in an empty cache, here; online, with no network, the lookup
    would retry for 23 s before the same line."""
    contents, styles = write_inputs(tmp_path, 1, 1)
    args = job_args(contents, styles, str(tmp_path / "o"), "--model", "no-such-org/no-such-model")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = run_job("generate", *args, timeout=120, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot find model 'no-such-org/no-such-model'")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--workers", "3:1", "--workers must be MIN:MAX with 1 <= MIN <= MAX, got 3:1"),
        ("--workers", "0:2", "--workers values must be >= 1, got '0:2'"),
        ("--cpus-per-worker", "0", "--cpus-per-worker must be a number > 0, got 0"),
        ("--cpus-per-worker", "nan", "--cpus-per-worker must be a number > 0, got nan"),
        ("--gpus-per-worker", "-1", "--gpus-per-worker must be a number >= 0, got -1"),
        ("--gpu-memory-gb", "-1", "--gpu-memory-gb must be a number > 0, got -1"),
        ("--startup-timeout", "0", "--startup-timeout must be a number > 0, got 0"),
    ],
)
def test_bad_pool_options_are_refused_before_ray_or_the_output(
    tmp_path, monkeypatch, flag, value, message
):
    monkeypatch.setattr(ray_connect, "connect_ray", lambda: pytest.fail("Ray was started"))
    contents, styles = write_inputs(tmp_path, 1, 1)
    with pytest.raises(UserError) as error:
        generate.main(job_args(contents, styles, str(tmp_path / "o"), flag, value))
    assert str(error.value) == message
    assert not (tmp_path / "o").exists()


def test_unreachable_bucket_fails_fast(tmp_path, s3_bucket):
    _, options = s3_bucket
    contents, styles = write_inputs(tmp_path, 1, 1)
    endpoint = options["client_kwargs"]["endpoint_url"]
    start = time.monotonic()
    with pytest.raises(UserError, match="cannot write to s3://no-such-bucket-here"):
        generate.main(
            job_args(
                contents,
                styles,
                "s3://no-such-bucket-here/run",
                f"--storage-option=client_kwargs.endpoint_url={endpoint}",
                f"--storage-option=key={options['key']}",
                f"--storage-option=secret={options['secret']}",
            )
        )
    assert time.monotonic() - start < 30


def plan_seed_for_both_splits(contents: list[str], styles: list[str], fraction: float) -> int:
    """A plan seed that puts these few pairs in both splits, as training needs."""
    pairs = [(c, s) for c in contents for s in styles]
    return next(
        seed
        for seed in range(100)
        if len({assign_split(c, s, fraction, seed) for c, s in pairs}) == 2
    )


def test_lsast_teacher_writes_every_pair_once_and_the_student_trains_on_it(
    ray_cluster, tmp_path, capsys
):
    """Every pair once, as StyleID's; then the student trains on the run, its style input for
    an LSAST pair being one of the images the pair's prompt file was learned from, and a
    prompt file that records none stops jobs.train in one line before Ray."""
    contents, styles = write_inputs(tmp_path, 2, 2, corrupt=True)
    images = expand_images([str(styles)], {}, "style")
    prompts = write_prompt_files(tmp_path / "learned", 2, images=images)
    urls = [u for u in expand_images([str(contents)], {}, "content") if "broken" not in u]
    seed = plan_seed_for_both_splits(urls, [str(p) for p in prompts], 0.5)
    out = tmp_path / "run"
    args = ["--content", str(contents), "--out", str(out), *FAST_TEACHER, "--workers", "1:1"]
    args += ["--teacher", "lsast", "--controlnet", "tiny", "--style-prompts", *map(str, prompts)]
    args += ["--val-fraction", "0.5", "--plan-seed", str(seed)]
    assert generate.main(args) == 0
    assert summary_line(capsys).startswith("pairs planned 6, written 4, already done 0")
    storage = Storage(str(out))
    lines = check_exactly_once(storage, 2 * 2)
    assert {line.teacher for line in lines} == {"lsast"}
    assert {line.style for line in lines} == {str(p) for p in prompts}
    assert run_json(storage)["teacher_hash"] == lines[0].teacher_hash
    assert "broken.png" in "".join(storage.read_bytes(k).decode() for k in storage.list("failures"))
    target = Image.open(out / lines[0].target)
    assert target.size == (64, 64)
    before = target_times(out)
    assert generate.main(args) == 0
    check_unchanged(out, before)
    assert summary_line(capsys).startswith("pairs planned 6, written 0, already done 4")

    config = small_config(str(out), "lsast", workers=1, epochs=1)
    splits = train.validate(config)
    assert splits.style_images == {str(p): images for p in prompts}
    dataset = TripleDataset(storage, splits.val, SIZE, False, 0, None, splits.style_images)
    squares = [np.asarray(center_crop_resize(Image.open(u).convert("RGB"), SIZE)) for u in images]
    style = (dataset[0].style * 255).round().byte().permute(1, 2, 0).numpy()
    assert any(np.array_equal(style, square) for square in squares)
    fit(config)
    assert [record["epoch"] for record in history(config)] == [1]
    unrecorded = new_generator(load_teacher("tiny", text_encoder=True))
    prompts[0].write_bytes(generator_bytes(unrecorded))  # records no style images
    with pytest.raises(UserError) as error:
        train.main(["--data", str(out), "--name", "again"])
    message = str(error.value)
    assert message.startswith(f"{prompts[0]} does not record the style images it was learned")
    assert "jobs.import_style --styles" in message and "\n" not in message
    assert not (out / "train" / "again").exists()


@pytest.mark.parametrize(
    ("prompt_file", "message"),
    [
        ("missing.safetensors", "no such file"),
        ("corrupt.safetensors", "is not a safetensors prompt file"),
        ("folder", "no such file: .*prompts.safetensors"),
    ],
)
def test_a_missing_or_corrupt_prompt_file_is_one_line_before_ray(tmp_path, prompt_file, message):
    contents, _ = write_inputs(tmp_path, 1, 0)
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 40)
    (tmp_path / "folder").mkdir()
    args = ["--content", str(contents), "--out", str(tmp_path / "o"), "--teacher", "lsast"]
    args += ["--style-prompts", str(tmp_path / prompt_file)]
    with pytest.raises(UserError, match=message):
        generate.main(args)
    assert not (tmp_path / "o").exists()
