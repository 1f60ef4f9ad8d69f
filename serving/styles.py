"""Styles a replica has encoded, and the gallery of styles it offers by id.

Encoding a style is a fixed share of a stylization (a fifth of STTR's work at equal sizes), and
a served page sends the same few styles again and again, so each replica keeps the encodings of
the styles it saw last, keyed by the SHA-256 of the uploaded bytes: the same picture under any
name is encoded once.
"""

from __future__ import annotations

import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from common.errors import UserError
from common.ids import sha256_hex
from common.inputs import expand_images
from common.storage import read_url

E = TypeVar("E")


class StyleCache(Generic[E]):
    """At most `size` encoded styles, least recently used dropped first; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, E] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # how many styles this cache had to encode (misses)

    def get(self, data: bytes, encode: Callable[[bytes], E]) -> E:
        """The encoding of the style file `data`, from `encode(data)` the first time."""
        key = sha256_hex(data)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = encode(data)  # outside the lock: other styles need not wait for this one
        with self._lock:
            self._items[key] = value
            self.encoded += 1
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


@dataclass(frozen=True)
class GalleryStyle:
    """A style offered by id: the file's name without its suffix."""

    id: str
    url: str
    data: bytes


def read_gallery(url: str, options: Mapping[str, Any]) -> dict[str, GalleryStyle]:
    """id -> style for every image in the folder or glob `url`; two files with one stem are a
    `UserError` (from `expand_images` when nothing is there)."""
    styles: dict[str, GalleryStyle] = {}
    for image in expand_images([url], options, "gallery"):
        style_id = posixpath.splitext(posixpath.basename(image))[0]
        if style_id in styles:
            raise UserError(f"--gallery: two styles are named {style_id!r}")
        styles[style_id] = GalleryStyle(style_id, image, read_url(image, options))
    return styles
