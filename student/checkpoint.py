"""Student checkpoints: a directory (any fsspec URL) with `model.safetensors` and `config.json`.

`config.json` holds the architecture's name ("arch") and its config's fields, and is written
last, so a directory that has it holds a complete checkpoint even if a writer was killed half
way. Training adds its own files (e.g. `optimizer.pt`) beside these two. A `config.json`
without "arch" was written before there were two architectures: it holds an STTR.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from common.errors import UserError
from common.storage import Storage
from student.architectures import (
    ARCHS,
    CONFIGS,
    DEFAULT_ARCH,
    StudentConfig,
    arch_of,
    build_student,
)
from student.choices import AUTHORS_MICROAST
from student.microast import MicroAST, MicroASTConfig, build_microast
from student.microast_weights import AUTHORS
from student.model import STTR
from student.run_record import best_checkpoint, checkpoint_url, read_run_record

Student = STTR | MicroAST  # what `load_student` returns
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_student(model: nn.Module, config: StudentConfig, storage_or_dir: Storage | str) -> None:
    """Write `model`'s weights (unwrapping DDP) and `config`, with its architecture's name,
    into a checkpoint directory."""
    storage = storage_or_dir if isinstance(storage_or_dir, Storage) else Storage(storage_or_dir)
    model = getattr(model, "module", model)
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    storage.write_bytes(MODEL_FILE, safetensors.torch.save(tensors))
    fields = {"arch": arch_of(config), **dataclasses.asdict(config)}
    storage.write_bytes(CONFIG_FILE, json.dumps(fields, indent=2).encode())


def load_student(
    url: str, storage_options: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"
) -> tuple[Student, StudentConfig]:
    """The student saved at `url` (in eval mode, on `device`), of the architecture its config
    names, and that config; anything that is not a readable checkpoint is a `UserError` naming
    `url`. A user's URL, which may name a training run folder, goes through
    `resolve_checkpoint` first, once."""
    storage = Storage(url, storage_options)
    config = read_config(storage)
    try:
        state = safetensors.torch.load(read_file(storage, MODEL_FILE))
    except SafetensorError as exc:
        raise UserError(f"{storage.url(MODEL_FILE)} is not a safetensors file: {exc}") from None
    model = build_student(config, init="scratch")
    load_weights(model, state, storage.url(MODEL_FILE))
    return model.to(device).eval(), config


def open_student(
    source: str,
    storage_options: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The student `source` names, in eval mode on `device`: `microast-authors` (the MicroAST
    authors' weights shipped with the project), or a training run folder or checkpoint URL."""
    if source == AUTHORS_MICROAST:
        return build_microast(MicroASTConfig(), init=AUTHORS).to(device).eval()
    return load_student(resolve_checkpoint(source, storage_options), storage_options, device)[0]


def check_student_source(source: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """What `open_student` would refuse for want of a checkpoint, as one `UserError` now; else
    what it will read: the checkpoint (a training run folder's best) or the student's name."""
    if source == AUTHORS_MICROAST:
        return source
    return resolve_checkpoint(source, storage_options)


def resolve_checkpoint(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """`url` itself if it is a checkpoint; for a training run folder, the checkpoint Ray Train's
    record of the run ranks best (`student.run_record`). Anything else is one `UserError`."""
    storage = Storage(url, storage_options)
    if storage.exists(CONFIG_FILE):
        return url
    if not storage.exists(""):
        raise UserError(f"{storage.root}: no such checkpoint (nothing is stored there)")
    try:
        record = read_run_record(storage)
    except UserError as exc:
        raise UserError(f"{storage.root}: {exc}") from None
    best = best_checkpoint(record) if record is not None else None
    if best is None:
        raise UserError(
            f"{storage.root} is neither a student checkpoint (it has no {CONFIG_FILE}) nor a "
            "training run folder with a checkpoint in Ray Train's record"
        )
    return checkpoint_url(storage, best)


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load a complete state dict; any missing, extra or reshaped weight is a `UserError`."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"{where} does not match its config.json: {len(missing)} weights missing, "
            f"{len(unexpected)} unexpected (e.g. {(missing or unexpected)[0]})"
        )
    for key in sorted(state):
        if state[key].shape != own[key].shape:
            raise UserError(
                f"{where} does not match its config.json: {key} has shape "
                f"{list(state[key].shape)}, expected {list(own[key].shape)}"
            )
    model.load_state_dict(state)


def read_config(storage: Storage) -> StudentConfig:
    """The student config in a checkpoint directory, of the architecture it names."""
    where = storage.url(CONFIG_FILE)
    try:
        fields = json.loads(read_file(storage, CONFIG_FILE))
        arch = fields.pop("arch", DEFAULT_ARCH)
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCHS)})")
        return CONFIGS[arch](**fields)
    except (ValueError, TypeError, AttributeError) as exc:  # bad JSON, fields or values
        raise UserError(f"{where} is not a valid student config: {exc}") from None


def read_file(storage: Storage, key: str) -> bytes:
    """Bytes of one checkpoint file; a missing file means "not a checkpoint"."""
    try:
        return storage.read_bytes(key)
    except FileNotFoundError:
        raise UserError(f"{storage.root} is not a student checkpoint: it has no {key}") from None
    except OSError as exc:
        raise UserError(f"cannot read {storage.url(key)}: {exc}") from None
