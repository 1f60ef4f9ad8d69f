"""One work unit on one engine: read a tile's images, skip finished pairs, stylize, store.

Order of writes is what makes re-runs safe: every target is one PUT to its final key; the
tile's manifest part is written last, after all its targets exist, and lists every pair of the
tile that has one (new and found); a tile whose part lists pairs is done (Ray retried it after
it finished). A killed worker therefore leaves at most some targets without a manifest line,
which the retry finds and does not redo. Pairs of unusable inputs are in no part: the driver
plans them again on the next run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True)
class TileResult:
    """What a tile did, returned to the driver as a small row (no pixels)."""

    tile_id: str
    written: int  # made now
    found: int  # stored by an earlier attempt (or listed, when Ray retried a finished tile)
    failed: int  # pairs of inputs that could not be used
    seconds: float


@dataclass(frozen=True)
class Image:
    url: str
    image_id: str
    pixels: torch.Tensor  # [3, R, R] in [0, 1]


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


class TileRunner:
    """Holds one StyleID engine and the run's storage; runs tiles one after another."""

    def __init__(
        self, options: TeacherOptions, root: str, storage_options: dict[str, Any], teacher_hash: str
    ) -> None:
        self.engine = options.build()
        self.resolution = options.styleid.resolution
        self.storage = Storage(root, storage_options)  # its options open the inputs too
        self.teacher_hash = teacher_hash

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
        missing = [pair for key, pair in keys.items() if not self.storage.exists(key)]
        written = self._generate(missing)
        elapsed = time.perf_counter() - start
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

    def _load(self, urls: tuple[str, ...], role: str, failures: list[FailureLine]) -> list[Image]:
        """Decode the tile's images; a corrupt, missing or unreadable one is recorded and left out.

        Any other error (throttling, a dropped connection) is not the input's fault: it fails
        the work unit, which writes no manifest part, so a re-run retries every pair.
        """
        images = []
        for url in urls:
            try:
                data = read_url(url, self.storage.options)
                images.append(Image(url, content_id(data), load_square(data, self.resolution, url)))
            except (ImageError, UnreadableInput) as exc:
                log.warning("skipping %s %s: %s", role, url, exc)
                failures.append(FailureLine(url, role, str(exc), self.teacher_hash))
        return images

    def _key(self, content: Image, style: Image) -> str:
        return target_key(self.teacher_hash, style.image_id, content.image_id)

    def _generate(self, missing: list[tuple[Image, Image]]) -> dict[tuple[str, str], bytes]:
        """Stylize exactly the missing pairs (each image inverted once) and store them."""
        if not missing:
            return {}
        contents = list({c.url: c for c, _ in missing}.values())
        styles = list({s.url: s for _, s in missing}.values())
        index = [(contents.index(c), styles.index(s)) for c, s in missing]
        images = self.engine.stylize_pairs(
            torch.stack([c.pixels for c in contents]),
            torch.stack([s.pixels for s in styles]),
            index,
        )
        written = {}
        for (content, style), image in zip(missing, images, strict=True):
            png = png_bytes(image)
            self.storage.write_bytes(self._key(content, style), png)
            written[content.url, style.url] = png
        return written

    def _line(
        self, content: Image, style: Image, split: str, png: bytes | None, seconds: float
    ) -> ManifestLine:
        """A manifest line; a target found from an earlier attempt is hashed from storage."""
        key = self._key(content, style)
        data = png if png is not None else self.storage.read_bytes(key)
        return ManifestLine(
            content=content.url,
            style=style.url,
            content_id=content.image_id,
            style_id=style.image_id,
            target=key,
            split=split,
            teacher_hash=self.teacher_hash,
            sha256=sha256_hex(data),
            seconds=seconds if png is not None else None,
        )
