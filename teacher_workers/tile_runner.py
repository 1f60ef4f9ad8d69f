"""One work unit on one engine: read a tile's images, skip finished pairs, stylize, store.

Order of writes is what makes re-runs safe: every target is one PUT to its final key; the
tile's manifest part is written last, after all its targets exist, and lists every pair of the
tile that has one (new and found); a tile whose part lists pairs is done (Ray retried it after
it finished). A killed worker therefore leaves at most some targets without a manifest line,
which the retry finds and does not redo. Pairs of unusable inputs are in no part: the driver
plans them again on the next run.

The actor runs two tiles at a time on one runner, so the engine need not wait for I/O: while
one tile is in the engine (one at a time, under a lock), the other reads and decodes its inputs or
encodes and stores its targets. Reads, existence checks and writes go through a bounded thread
pool (PNG encoding and storage requests release the GIL), so many requests are in flight at
once; a tile waits for all its target writes before its manifest part, and a failed write fails
the tile after the others finished, so every target it stored stays for the re-run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch

from common.errors import ImageError, UnreadableInput
from common.ids import content_id, sha256_hex
from common.images import load_square, png_bytes
from common.manifest import (
    FailureLine,
    ManifestLine,
    failure_key,
    manifest_key,
    target_key,
    write_lines,
)
from common.planning import Tile
from common.storage import Storage, read_url
from teacher_workers.options import TeacherOptions

log = logging.getLogger(__name__)
T = TypeVar("T")
TILES_IN_FLIGHT = 2  # tiles one actor runs at once: one in the engine, one reading or writing
IO_THREADS = 16  # storage requests and PNG encodings of one runner in flight at once


@dataclass(frozen=True)
class TileResult:
    """What a tile did, returned to the driver as a small row (no pixels)."""

    tile_id: str
    written: int  # made now
    found: int  # stored by an earlier attempt (or listed, when Ray retried a finished tile)
    failed: int  # pairs of inputs that could not be used
    seconds: float


@dataclass(frozen=True)
class Input:
    """An input as the engine takes it: a content image [3, R, R] in [0, 1], or a style as its
    teacher reads it (an image, or a learned style); `input_id` is the digest of its bytes."""

    url: str
    input_id: str
    value: Any


def tile_to_json(tile: Tile) -> str:
    """Tiles travel to actors as JSON strings: one Ray Data column, no pickled objects."""
    return json.dumps(asdict(tile))


def tile_from_json(text: str) -> Tile:
    data = json.loads(text)
    return Tile(
        data["tile_id"],
        tuple(data["contents"]),
        tuple(data["styles"]),
        tuple(tuple(row) for row in data["splits"]),
    )


def results(futures: list[Future[T]]) -> list[T]:
    """Results of every future, once all are done: the first failure is raised only after the
    others finished, so nothing of a failed tile is still being written when it is reported."""
    wait(futures)
    return [future.result() for future in futures]


class TileRunner:
    """Holds one teacher engine, the run's storage and an I/O pool; runs tiles, from up to
    `TILES_IN_FLIGHT` threads at once. With `io_threads=1`, one tile at a time does every step
    one after another (the serial pipeline the benchmark compares with)."""

    def __init__(
        self,
        options: TeacherOptions,
        root: str,
        storage_options: dict[str, Any],
        teacher_hash: str,
        io_threads: int = IO_THREADS,
    ) -> None:
        self.engine = options.build()
        self.teacher = options.teacher
        self.resolution = options.resolution
        self.storage = Storage(root, storage_options)  # its options open the inputs too
        self.teacher_hash = teacher_hash
        self.io = ThreadPoolExecutor(io_threads, thread_name_prefix="tile-io")
        self.engine_lock = threading.Lock()

    def run(self, tile: Tile) -> TileResult:
        start = time.perf_counter()
        if listed := self._listed(tile.tile_id):
            return TileResult(tile.tile_id, 0, listed, len(tile) - listed, 0.0)
        failures: list[FailureLine] = []
        contents = self._load(tile.contents, "content", failures)
        styles = self._load(tile.styles, "style", failures)
        split = {(p.content, p.style): p.split for p in tile.pairs()}  # the pairs it owns
        pairs = [(c, s) for s in styles for c in contents if (c.url, s.url) in split]
        keys = {self._key(c, s): (c, s) for c, s in pairs}  # identical bytes: generated once
        stored = results([self.io.submit(self.storage.exists, key) for key in keys])
        missing = [pair for pair, done in zip(keys.values(), stored, strict=True) if not done]
        written, waited = self._generate(missing)
        elapsed = time.perf_counter() - start - waited  # the tile's own time
        per_pair = elapsed / max(len(missing), 1)
        lines = [
            self._line(c, s, split[c.url, s.url], written.get((c.url, s.url)), per_pair)
            for c, s in pairs
        ]
        if failures:
            write_lines(self.storage, failure_key(self.teacher_hash, tile.tile_id), failures)
        if lines:
            write_lines(self.storage, manifest_key(self.teacher_hash, tile.tile_id), lines)
        found = len(lines) - len(missing)
        return TileResult(tile.tile_id, len(missing), found, len(tile) - len(lines), elapsed)

    def _listed(self, tile_id: str) -> int:
        """Lines in the tile's manifest part (0 when it has none, or an empty one)."""
        try:
            data = self.storage.read_bytes(manifest_key(self.teacher_hash, tile_id))
        except FileNotFoundError:
            return 0
        return sum(1 for line in data.splitlines() if line.strip())

    def _load(self, urls: tuple[str, ...], role: str, failures: list[FailureLine]) -> list[Input]:
        """Decode the tile's images; a corrupt, missing or unreadable one is recorded and left out.

        Any other error (throttling, a dropped connection) is not the input's fault: it fails
        the work unit, which writes no manifest part, so a re-run retries every pair.
        """
        images = []
        reads = [self.io.submit(self._read, url, role) for url in urls]
        for url, future in zip(urls, reads, strict=True):
            try:
                images.append(future.result())
            except (ImageError, UnreadableInput) as exc:
                log.warning("skipping %s %s: %s", role, url, exc)
                failures.append(FailureLine(url, role, str(exc), self.teacher_hash))
        return images

    def _read(self, url: str, role: str) -> Input:
        """An input's bytes as the engine takes them (a bad one raises an `ImageError`)."""
        data = read_url(url, self.storage.options)
        if role == "style":
            value = self.teacher.read_style(data, url, self.resolution)
        else:
            value = load_square(data, self.resolution, url)
        return Input(url, content_id(data), value)

    def _key(self, content: Input, style: Input) -> str:
        return target_key(self.teacher_hash, style.input_id, content.input_id)

    def _generate(
        self, missing: list[tuple[Input, Input]]
    ) -> tuple[dict[tuple[str, str], bytes], float]:
        """Stylize exactly the missing pairs (each image inverted once) and store them; returns
        their PNGs and the seconds spent waiting for the engine's other tile."""
        if not missing:
            return {}, 0.0
        contents = list({c.url: c for c, _ in missing}.values())
        styles = list({s.url: s for _, s in missing}.values())
        index = [(contents.index(c), styles.index(s)) for c, s in missing]
        content_pixels = torch.stack([c.value for c in contents])
        style_values = [s.value for s in styles]
        asked = time.perf_counter()
        with self.engine_lock:
            waited = time.perf_counter() - asked
            images = self.engine.stylize_pairs(content_pixels, style_values, index)
            images = images.cpu()  # off the GPU before the next tile takes the engine
        pngs = results(
            [
                self.io.submit(self._store, self._key(c, s), image)
                for (c, s), image in zip(missing, images, strict=True)
            ]
        )
        return {(c.url, s.url): png for (c, s), png in zip(missing, pngs, strict=True)}, waited

    def _store(self, key: str, image: torch.Tensor) -> bytes:
        png = png_bytes(image)
        self.storage.write_bytes(key, png)
        return png

    def _line(
        self, content: Input, style: Input, split: str, png: bytes | None, seconds: float
    ) -> ManifestLine:
        """A manifest line; a target found from an earlier attempt is hashed from storage."""
        key = self._key(content, style)
        data = png if png is not None else self.storage.read_bytes(key)
        return ManifestLine(
            content=content.url,
            style=style.url,
            content_id=content.input_id,
            style_id=style.input_id,
            target=key,
            split=split,
            teacher_hash=self.teacher_hash,
            teacher=self.teacher.name,
            sha256=sha256_hex(data),
            seconds=seconds if png is not None else None,
        )
