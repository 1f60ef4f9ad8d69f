"""Expanding input arguments (files, folders, globs on any fsspec URL) into image URLs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common.errors import UserError
from common.ids import sha256_hex
from common.storage import is_local, open_fs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def options_for(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The storage options that apply to `url`."""
    return {} if is_local(url) else dict(options)


def expand_images(arguments: Sequence[str], options: Mapping[str, Any], role: str) -> list[str]:
    """Image URLs named by `arguments`: a file, a folder (its images, recursively) or a glob.

    A name that matches nothing is a `UserError` here, before any work starts.
    """
    urls: list[str] = []
    for argument in arguments:
        fs, path = open_fs(argument, options_for(argument, options))
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        try:
            if any(ch in path for ch in "*?["):
                found = fs.glob(path)
            elif fs.isdir(path):
                found = [p for p in fs.find(path) if p.lower().endswith(IMAGE_SUFFIXES)]
            elif fs.exists(path):
                found = [path]
            else:
                raise UserError(f"{role} input {argument!r} does not exist")
        except UserError:
            raise
        except Exception as exc:  # unreachable store, bad credentials, ...
            raise UserError(f"cannot list {role} input {argument!r}: {exc}") from None
        if not found:
            raise UserError(f"{role} input {argument!r} holds no images")
        urls.extend(_url(protocol, p, argument) for p in sorted(found))
    return list(dict.fromkeys(urls))


def _url(protocol: str, path: str, argument: str) -> str:
    """Back from a filesystem path to the URL form the user used."""
    if is_local(argument):
        return path
    return f"{protocol}://{path}"


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
    golden_by_size: dict[int, set[str]] = {}
    for url in golden:
        fs, path = open_fs(url, options_for(url, options))
        golden_by_size.setdefault(fs.size(path), set()).add(sha256_hex(fs.cat_file(path)))
    for url in training:
        fs, path = open_fs(url, options_for(url, options))
        digests = golden_by_size.get(fs.size(path))
        if digests and sha256_hex(fs.cat_file(path)) in digests:
            raise UserError(
                f"training input {url} is a golden image (same bytes): a leak; "
                "remove it from the training inputs"
            )
