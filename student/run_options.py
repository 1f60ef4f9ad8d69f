"""The options a training run started with, `<data>/train/<name>.options.json`: the same --name
again resumes from the checkpoint, whose model, optimiser state and lr schedule win over what
the command line now says (--lr, --loss, the model's shape, ...). Saying so before Ray starts
beats training on silently with other settings than the user asked for."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from student.train_config import TrainConfig

# What a resumed run keeps from its start: its checkpoint's model and optimiser, and what
# shapes what it learns. Others (--epochs, --workers, --patience, ...) may change on resume.
KEPT = (
    "lr",
    "lr_factor",
    "lr_patience",
    "loss",
    "batch_size",
    "crop_size",
    "seed",
    "init",
    "backbone_weights",
    "vgg_weights",
    "teacher_hash",
)


def options_key(name: str) -> str:
    return f"train/{name}.options.json"


def kept_options(config: TrainConfig) -> dict[str, Any]:
    """The options a resumed run keeps, by flag name, as JSON values."""
    values = {name: getattr(config, name) for name in KEPT} | asdict(config.model)
    return json.loads(json.dumps({f"--{k.replace('_', '-')}": v for k, v in values.items()}))


def note_options(config: TrainConfig, resumed: bool) -> None:
    """Record a new run's options; for a resumed run, print a line naming those that differ
    from its start (they do not apply: a new --name trains with them)."""
    storage, key = config.storage(), options_key(config.name)
    now = kept_options(config)
    try:
        before = json.loads(storage.read_bytes(key)) if resumed else None
    except (FileNotFoundError, ValueError):  # a run from before this record: nothing to compare
        before = None
    if before is None:
        storage.write_bytes(key, json.dumps(now, indent=2).encode())
        return
    changed = [flag for flag, value in now.items() if flag in before and before[flag] != value]
    if changed:
        started = ", ".join(f"{flag} {before[flag]}" for flag in changed)
        given = ", ".join(f"{flag} {now[flag]}" for flag in changed)
        print(
            f"note: run {config.name!r} resumes with the settings it started with ({started}), "
            f"not {given}: its checkpoint's model, optimiser and lr schedule go on; pass a new "
            "--name to train with these"
        )
