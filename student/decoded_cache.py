"""Decoded training images kept on a node's local disk: each image is decoded once, not per epoch.

Decoding a pair's three PNGs (plus resizing content and style to the teacher's resolution)
costs far more CPU than cropping an already decoded array, and a GPU training STTR wants
hundreds of samples per second. The cache holds one uint8 [S, S, 3] `.npy` per image at the
size the student reads it, named by what its pixels were decoded from:

- a target by its manifest `sha256` (the hash of the target file's bytes);
- a content or style image by its id (the hash of the source file's bytes) and the size it
  was resized to.

A name therefore cannot point at pixels of other bytes, and a regenerated target (a new
`sha256` in the manifest) misses the cache and is decoded again: a stale entry is never read.
Bumping `CACHE_VERSION` (when the preprocessing changes) retires every earlier entry. Files
are written to a temporary name and renamed, so concurrent DataLoader processes and ranks on
one node can share the folder; an unreadable or wrongly shaped file counts as a miss.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


class DecodedCache:
    """A folder of decoded images keyed by the hash of their source bytes (see module doc)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path(self, kind: str, source_hash: str, size: int | None = None) -> Path:
        """Where the image of `kind` ("target", "content", "style") decoded from the bytes with
        `source_hash` (and resized to `size`, for inputs) is kept."""
        name = hashlib.sha256(f"{CACHE_VERSION}/{kind}/{source_hash}/{size}".encode()).hexdigest()
        return self.folder / name[:2] / f"{name}.npy"

    def get(self, path: Path, size: int | None = None) -> np.ndarray | None:
        """The cached uint8 [S, S, 3] array (memory-mapped), or None when absent or unusable;
        with `size`, S must equal it."""
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        side = array.shape[0] if array.ndim == 3 else -1
        if array.dtype != np.uint8 or array.shape != (side, side, 3) or size not in (None, side):
            return None
        return array

    def put(self, path: Path, array: np.ndarray) -> None:
        """Store `array` at `path` atomically (temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, np.ascontiguousarray(array, dtype=np.uint8), allow_pickle=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
