"""Expanding input arguments (files, folders, globs on any fsspec URL) into image URLs."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image, ImageFile

from common.errors import UnreadableInput, UserError
from common.ids import sha256_hex
from common.storage import absolute_url, is_local, open_fs, read_url

log = logging.getLogger(__name__)


def _image_suffixes() -> tuple[str, ...]:
    """Suffixes of every format Pillow decodes (.png, .jpg, .gif, .tif, .bmp, .webp, ...).

    Left out: stub formats (HDF5, GRIB, BUFR, WMF), which need a handler Pillow does not have,
    and MPEG, which Pillow only identifies and would decode as a black frame.
    """
    Image.init()

    def decodes(fmt: str) -> bool:
        factory = Image.OPEN[fmt][0]
        stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
        return not stub and fmt != "MPEG"

    extensions = Image.registered_extensions()
    return tuple(
        sorted(ext for ext, fmt in extensions.items() if fmt in Image.OPEN and decodes(fmt))
    )


IMAGE_SUFFIXES = _image_suffixes()


def expand_images(arguments: Sequence[str], options: Mapping[str, Any], role: str) -> list[str]:
    """Image URLs named by `arguments`: a file, a folder (its images, recursively) or a glob.

    A name that matches nothing is a `UserError` here, before any work starts.
    """
    urls: list[str] = []
    for argument in arguments:
        argument = absolute_url(argument)  # a relative path is refused inside a Ray job's copy
        fs, path = open_fs(argument, options)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        skipped = ""
        try:
            if any(ch in path for ch in "*?["):
                found = fs.glob(path)
            elif fs.isdir(path):
                found, skipped = _folder_images(fs.find(path), path)
                if skipped and found:
                    log.warning("%s input %r: %s", role, argument, skipped)
            elif fs.exists(path):
                found = [path]
            else:
                raise UserError(f"{role} input {argument!r} does not exist")
        except UserError:
            raise
        except Exception as exc:  # unreachable store, bad credentials, ...
            raise UserError(f"cannot list {role} input {argument!r}: {exc}") from None
        if not found:
            why = f" ({skipped})" if skipped else ""
            raise UserError(f"{role} input {argument!r} holds no images{why}")
        # back from filesystem paths to the URL form the user used
        urls.extend(p if is_local(argument) else f"{protocol}://{p}" for p in sorted(found))
    return list(dict.fromkeys(urls))


def _folder_images(files: list[str], folder: str) -> tuple[list[str], str]:
    """The image files of a folder listing, and one line on what was left out and why ('' when
    nothing was). Hidden files and folders (.DS_Store, .ipynb_checkpoints/) are tool metadata."""
    images, hidden, other = [], [], []
    for path in files:
        relative = posixpath.relpath(path, folder)
        if any(part.startswith(".") for part in relative.split("/")):
            hidden.append(relative)
        elif path.lower().endswith(IMAGE_SUFFIXES):
            images.append(path)
        else:
            other.append(relative)
    reasons = [
        f"{len(names)} {why} ({', '.join(sorted(names)[:3])}{', ...' * (len(names) > 3)})"
        for names, why in ((other, "not an image by suffix"), (hidden, "hidden"))
        if names
    ]
    line = f"skipped {len(hidden) + len(other)} of {len(files)} files: {'; '.join(reasons)}"
    return images, line if reasons else ""


def check_golden_leak(
    golden: Sequence[str], training: Sequence[str], options: Mapping[str, Any]
) -> None:
    """Refuse a golden image whose bytes are also among the training inputs (under any name).

    Only training files of the same size as some golden file are read and hashed: the check
    costs one size lookup per file (often answered from fsspec's listing cache), not a
    download of the data set.
    """
    if not golden:
        return
    golden_by_size: dict[int | None, set[str]] = {}
    for url in golden:
        if (digest := _digest(url, options)) is not None:
            golden_by_size.setdefault(_size(url, options), set()).add(digest)
    for url in training:
        digests = golden_by_size.get(_size(url, options))
        if digests and _digest(url, options) in digests:
            raise UserError(
                f"training input {url} is a golden image (same bytes): a leak; "
                "remove it from the training inputs"
            )


def _size(url: str, options: Mapping[str, Any]) -> int | None:
    """Size of an input; None when it cannot be read (a symlink loop, a dangling link)."""
    fs, path = open_fs(url, options)
    try:
        return fs.size(path)
    except OSError:
        return None


def _digest(url: str, options: Mapping[str, Any]) -> str | None:
    """Hash of an input's bytes; None when it cannot be read: an unreadable input leaks
    nothing, and generation records it as unusable."""
    try:
        return sha256_hex(read_url(url, options))
    except UnreadableInput:
        return None
