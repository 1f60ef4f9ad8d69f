"""One work unit without Ray: the order of its writes, and a partly written tile finished from
the targets an interrupted attempt left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.manifest import manifest_key, read_manifest
from common.planning import Tile, make_tiles, plan_grid
from common.storage import Storage
from teacher_workers.config import StyleIDConfig
from teacher_workers.options import TeacherOptions
from teacher_workers.tile_runner import TileRunner
from tests.generation_helpers import check_unchanged, target_times, write_inputs

TEACHER = TeacherOptions(
    model="tiny",
    device="cpu",
    dtype="float32",
    styleid=StyleIDConfig(resolution=64, steps=3, batch_size=4),
)


class RecordingStorage(Storage):
    """A storage that remembers the key of every write, in order."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.writes: list[str] = []

    def write_bytes(self, key: str, data: bytes) -> None:
        self.writes.append(key)
        super().write_bytes(key, data)


@pytest.fixture
def runner_and_tile(tmp_path: Path) -> tuple[TileRunner, Tile]:
    contents, styles = write_inputs(tmp_path, 2, 2)
    pairs = plan_grid(sorted(map(str, contents.iterdir())), sorted(map(str, styles.iterdir())))
    (tile,) = make_tiles(pairs, 2, 2)
    runner = TileRunner(TEACHER, str(tmp_path / "run"), {}, "t0")
    runner.storage = RecordingStorage(str(tmp_path / "run"))
    return runner, tile


def test_every_target_is_stored_before_the_tiles_manifest_part(runner_and_tile) -> None:
    runner, tile = runner_and_tile
    result = runner.run(tile)
    part = manifest_key("t0", tile.tile_id)
    assert (result.written, result.found, result.failed) == (4, 0, 0)
    assert runner.storage.writes[-1] == part
    assert sorted(runner.storage.writes[:-1]) == sorted(
        line.target for line in read_manifest(runner.storage)
    )


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
