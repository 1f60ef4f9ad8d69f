"""One work unit without Ray: the order of its writes, a partly written tile finished from the
targets an interrupted attempt left behind, and the overlapped pipeline (two tiles at once, writes
in the I/O pool) storing what the serial one stores, and nothing less when a write fails."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.errors import UserError
from common.ids import content_id
from common.manifest import ManifestLine, manifest_key, read_manifest, target_key
from common.planning import Tile, make_tiles, plan_grid
from common.storage import Storage
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.tile_runner import TILES_IN_FLIGHT, TileRunner
from tests.support.generation_helpers import check_unchanged, target_times, write_inputs

HOLD_S = 3.0  # longer than a runner that does not wait takes to ask for its manifest part
TEACHER = TeacherOptions(
    model="tiny",
    device="cpu",
    dtype="float32",
    styleid=StyleIDConfig(resolution=64, steps=3, batch_size=4),
)


class RecordingStorage(Storage):
    """A storage that remembers the key of every write, in order, and refuses the `failing` keys
    (as a full disk or a lost connection would)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.writes: list[str] = []
        self.failing: set[str] = set()

    def write_bytes(self, key: str, data: bytes) -> None:
        if key in self.failing:
            raise UserError(f"cannot write {self.url(key)}: refused")
        self.writes.append(key)
        super().write_bytes(key, data)


class HeldStorage(Storage):
    """A slow disk: each target write is held until the tile's manifest part is asked for (or
    `HOLD_S` passed) and recorded when done; the part is recorded when asked. A runner that
    waits for its target writes shows every target before the part; one that does not shows
    the part first, however fast the real disk is."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.events: list[str] = []
        self.part_asked = threading.Event()

    def write_bytes(self, key: str, data: bytes) -> None:
        is_part = key.startswith("manifests/")
        if is_part:
            self.events.append(key)
            self.part_asked.set()
        else:
            self.part_asked.wait(HOLD_S)
        super().write_bytes(key, data)
        if not is_part:
            self.events.append(key)


def recording_runner(root: Path, **options: int) -> TileRunner:
    runner = TileRunner(TEACHER, str(root), {}, "t0", **options)
    runner.storage = RecordingStorage(str(root))
    return runner


def stored(root: Path) -> tuple[dict[str, bytes], dict[str, list[ManifestLine]]]:
    """Every target's bytes and every manifest part's lines (timings left out) under a root."""
    storage = Storage(str(root))
    targets = {key: storage.read_bytes(key) for key in storage.list("targets")}
    parts = {
        key: [
            dataclasses.replace(ManifestLine.from_json(text), seconds=None)
            for text in storage.read_bytes(key).decode().splitlines()
        ]
        for key in storage.list("manifests")
    }
    return targets, parts


@pytest.fixture
def runner_and_tile(tmp_path: Path) -> tuple[TileRunner, Tile]:
    contents, styles = write_inputs(tmp_path, 2, 2)
    pairs = plan_grid(sorted(map(str, contents.iterdir())), sorted(map(str, styles.iterdir())))
    (tile,) = make_tiles(pairs, 2, 2)
    return recording_runner(tmp_path / "run"), tile


def test_every_target_is_stored_before_the_tiles_manifest_part(runner_and_tile) -> None:
    runner, tile = runner_and_tile
    runner.storage = storage = HeldStorage(runner.storage.root)
    result = runner.run(tile)
    part = manifest_key("t0", tile.tile_id)
    assert (result.written, result.found, result.failed) == (4, 0, 0)
    assert storage.events[-1] == part
    assert sorted(storage.events[:-1]) == sorted(line.target for line in read_manifest(storage))


def test_a_partly_written_tile_is_finished_from_its_stored_targets(runner_and_tile) -> None:
    runner, tile = runner_and_tile
    runner.run(tile)
    storage = runner.storage
    root = Path(storage.root)
    complete = [line.target for line in read_manifest(storage)]
    # what a worker killed while writing leaves: two targets and no manifest part
    lost = sorted(complete)[:2]
    for key in [*lost, manifest_key("t0", tile.tile_id)]:
        (root / key).unlink()
    kept = target_times(root)
    storage.writes.clear()

    result = runner.run(tile)

    assert (result.written, result.found, result.failed) == (2, 2, 0)
    assert sorted(storage.writes[:-1]) == sorted(lost)
    assert storage.writes[-1] == manifest_key("t0", tile.tile_id)
    check_unchanged(root, kept)
    lines = read_manifest(storage)
    assert sorted(line.target for line in lines) == sorted(complete)
    assert sorted(line.target for line in lines if line.seconds is not None) == sorted(lost)


def test_the_overlapped_pipeline_stores_what_the_serial_one_stores(tmp_path: Path) -> None:
    contents, styles = write_inputs(tmp_path, 2, 2)
    pairs = plan_grid(sorted(map(str, contents.iterdir())), sorted(map(str, styles.iterdir())))
    tiles = make_tiles(pairs, 1, 2)
    serial = recording_runner(tmp_path / "serial", io_threads=1)
    overlapped = recording_runner(tmp_path / "overlapped")

    for tile in tiles:
        serial.run(tile)
    with ThreadPoolExecutor(TILES_IN_FLIGHT) as actor_threads:  # as Ray runs the actor
        results = list(actor_threads.map(overlapped.run, tiles))

    assert [(r.written, r.found, r.failed) for r in results] == [(2, 0, 0)] * len(tiles)
    targets, parts = stored(tmp_path / "overlapped")
    assert (targets, parts) == stored(tmp_path / "serial")
    assert len(targets) == 4 and len(parts) == len(tiles) == 2
    writes = overlapped.storage.writes
    for part, lines in parts.items():  # each part after its own targets, whatever the other did
        assert all(writes.index(line.target) < writes.index(part) for line in lines)


def test_a_failed_write_in_the_pool_fails_the_tile_and_loses_nothing(runner_and_tile) -> None:
    runner, tile = runner_and_tile
    storage = runner.storage
    root = Path(storage.root)
    pair = tile.pairs()[0]
    image_id = {url: content_id(Path(url).read_bytes()) for url in (pair.content, pair.style)}
    refused = target_key("t0", image_id[pair.style], image_id[pair.content])
    storage.failing.add(refused)

    with pytest.raises(UserError, match="refused"):
        runner.run(tile)

    kept = target_times(root)
    assert sorted(kept) == sorted(storage.writes)  # the other three targets, and no part
    assert len(kept) == 3 and refused not in kept
    storage.failing.clear()
    storage.writes.clear()
    result = runner.run(tile)
    assert (result.written, result.found, result.failed) == (1, 3, 0)
    assert storage.writes == [refused, manifest_key("t0", tile.tile_id)]
    check_unchanged(root, kept)
    assert len(read_manifest(storage)) == 4
