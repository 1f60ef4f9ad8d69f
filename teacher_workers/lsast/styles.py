"""Learned styles as inputs: the prompt files `jobs.learn_style` writes, named by URL.

A `--style-prompts` argument is a prompt file (`*.safetensors`) or a learned-style folder (its
`prompts.safetensors`). Every one is read and parsed in the driver, so a missing or corrupt file
is one error line before any work starts.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from common.errors import UserError, first_line
from common.storage import open_fs, read_url
from teacher_workers.lsast.generator import (
    STYLES_KEY,
    LSASTPromptGenerator,
    PromptFileError,
    generator_from_bytes,
)

PROMPT_FILE = "prompts.safetensors"
MAX_HEADER = 100_000_000  # safetensors' own limit on a header's size


def prompt_file_urls(
    arguments: Sequence[str], options: Mapping[str, Any], width: int | None = None
) -> list[str]:
    """The prompt file each argument names, checked to load (and to be `width` wide, the
    model's text encoder's, where known); duplicates are dropped."""
    urls: list[str] = []
    for argument in arguments:
        fs, path = open_fs(argument, options)
        url = argument.rstrip("/")
        if fs.isdir(path):
            url = posixpath.join(url, PROMPT_FILE)
        read_prompts(url, options, width)
        if url not in urls:
            urls.append(url)
    if not urls:
        raise UserError("--teacher lsast needs at least one --style-prompts file or folder")
    return urls


def read_prompts(
    url: str, options: Mapping[str, Any], width: int | None = None
) -> LSASTPromptGenerator:
    """The generator a prompt file holds, in eval mode (`UserError` if missing or corrupt, or
    not `width` wide: learned for another model, whose prompts this one's text encoder cannot
    take)."""
    generator = generator_from_bytes(read_url(url, options), url).eval()
    if width is not None and generator.dim != width:
        raise PromptFileError(
            f"{url} holds {generator.dim}-wide prompts, learned for another model: this "
            f"model's text encoder is {width} wide (learn the style with this --model)"
        )
    return generator


def learned_from(url: str, options: Mapping[str, Any]) -> list[str]:
    """The style images a prompt file was learned from, as `jobs.learn_style` (or
    `jobs.import_style --styles`) recorded them, each checked to exist; only the file's header
    is read. A file that records none, or names a missing image, is a `UserError`."""
    fs, path = open_fs(url, options)
    try:
        with fs.open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= MAX_HEADER:
                raise ValueError(f"header size {size}")
            metadata = json.loads(handle.read(size)).get("__metadata__") or {}
            styles = json.loads(metadata.get(STYLES_KEY, "[]"))
            if not isinstance(styles, list) or not all(isinstance(u, str) for u in styles):
                raise ValueError(f"{STYLES_KEY} is not a list of URLs")
    except FileNotFoundError:
        raise UserError(f"learned style {url}: no such file") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{url} is not a safetensors prompt file ({first_line(exc)})") from None
    if not styles:
        raise UserError(
            f"{url} does not record the style images it was learned from, which the student "
            "takes as its style input for LSAST pairs: learn it again with jobs.learn_style, or "
            "import it with jobs.import_style --styles IMAGES (the collection it was learned on)"
        )
    for image in styles:
        image_fs, image_path = open_fs(image, options)
        if not image_fs.exists(image_path):
            raise UserError(f"{url} was learned from {image}, which no longer exists")
    return styles
