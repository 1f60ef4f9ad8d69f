"""Learned styles as inputs: the prompt files `jobs.learn_style` writes, named by URL.

A `--style-prompts` argument is a prompt file (`*.safetensors`) or a learned-style folder (its
`prompts.safetensors`). Every one is read and parsed in the driver, so a missing or corrupt file
is one error line before any work starts.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from common.errors import UserError
from common.storage import open_fs, read_url
from teacher_workers.lsast_generator import LSASTPromptGenerator, generator_from_bytes

PROMPT_FILE = "prompts.safetensors"


def prompt_file_urls(arguments: Sequence[str], options: Mapping[str, Any]) -> list[str]:
    """The prompt file each argument names, checked to load; duplicates are dropped."""
    urls: list[str] = []
    for argument in arguments:
        fs, path = open_fs(argument, options)
        url = argument.rstrip("/")
        if fs.isdir(path):
            url = posixpath.join(url, PROMPT_FILE)
        read_prompts(url, options)
        if url not in urls:
            urls.append(url)
    if not urls:
        raise UserError("--teacher lsast needs at least one --style-prompts file or folder")
    return urls


def read_prompts(url: str, options: Mapping[str, Any]) -> LSASTPromptGenerator:
    """The generator a prompt file holds, in eval mode (`UserError` if missing or corrupt)."""
    return generator_from_bytes(read_url(url, options), url).eval()
