"""The LSAST authors' released prompt files (`embeddings_gs-*.pt`), read without running them.

Their `EmbeddingManager.save` writes `torch.save({"attention": <the TransformerBlock module,
pickled whole>, "initial_embeddings": <(1, 768) parameter>})`. Unpickling that the usual way
imports their `ldm` classes and can run any code a crafted file names, so it is read with
PyTorch's restricted unpickler (`weights_only=True`) instead: the module classes the file names
(`ldm.*`, `torch.nn.modules.*`) are mapped to `PickledModule`, an inert record of the attributes
pickle restores, and any other global (a `__reduce__` naming `os.system`, say) is refused before
anything is unpickled. The records' parameters and buffers, under the module paths the pickle
holds, are the state dict of our generator (whose key names are the authors').
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import torch

from common.errors import first_line
from teacher_workers.lsast.generator import (
    LSASTPromptGenerator,
    PromptFileError,
    generator_from_state,
)

# Classes a pickled prompt generator may name: the authors' modules and torch's layers.
MODULE_PREFIXES = ("ldm.", "torch.nn.modules.")


class PickledModule:
    """What a pickled `nn.Module` restores into here: its attributes, and nothing it can run
    (no `__setstate__`, so the unpickler only updates `__dict__`)."""


def module_state(module: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict a pickled module would have: its persistent parameters and buffers and
    its submodules', by dotted path."""
    attributes = getattr(module, "__dict__", {})
    transient = attributes.get("_non_persistent_buffers_set", set())
    state = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in attributes.get(kind, {}).items():
            if value is not None and name not in transient:
                state[prefix + name] = value.detach()
    for name, child in attributes.get("_modules", {}).items():
        if child is not None:
            state |= module_state(child, f"{prefix}{name}.")
    return state


def read_checkpoint(data: bytes, what: str) -> Any:
    """The unpickled file, with module classes as `PickledModule`s; a file that names any
    other class or function is refused before it is unpickled."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception as exc:  # not a zip, a truncated one, a damaged pickle: not a torch file
        raise PromptFileError(f"{what} is not a PyTorch file ({first_line(exc)})") from None
    foreign = [name for name in names if not name.startswith(MODULE_PREFIXES)]
    if foreign:
        raise PromptFileError(
            f"{what} needs {', '.join(sorted(foreign))} to be unpickled, which a prompt file "
            "does not: refused without running it"
        )
    try:
        with torch.serialization.safe_globals([(PickledModule, name) for name in names]):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a refused opcode, a record called as a function, bad storage
        raise PromptFileError(f"{what} cannot be read safely ({first_line(exc)})") from None


def authors_generator(data: bytes, what: str) -> LSASTPromptGenerator:
    """The generator an authors' `embeddings_gs-*.pt` holds (its `attention` block, pickled
    whole or as a state dict, and `initial_embeddings`); anything else is a `PromptFileError`."""
    checkpoint = read_checkpoint(data, what)
    if not isinstance(checkpoint, Mapping) or set(checkpoint) != {
        "attention",
        "initial_embeddings",
    }:
        keys = sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else None
        raise PromptFileError(
            f"{what} is not an LSAST prompt file: expected the keys attention and "
            f"initial_embeddings (EmbeddingManager.save), found {keys or type(checkpoint).__name__}"
        )
    block = checkpoint["attention"]
    block = dict(block) if isinstance(block, Mapping) else module_state(block)
    init = checkpoint["initial_embeddings"]
    if not isinstance(init, torch.Tensor):
        raise PromptFileError(f"{what}: initial_embeddings is not a tensor")
    state = {f"attention.{key}": value for key, value in block.items()}
    state["initial_embeddings"] = init.detach().reshape(1, -1)
    return generator_from_state(state, what)
