"""Which teacher to run and how: the options every teacher command shares, as one typed object.

`TeacherOptions` is small and picklable, so a driver validates it once and ships it to Ray
actors, which build their own engine on their own GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated

import torch
import tyro

from teacher_workers.config import StyleIDConfig, teacher_hash
from teacher_workers.engine import StyleIDEngine
from teacher_workers.model_source import pin_model
from teacher_workers.models import (
    DTYPES,
    PRESETS,
    check_model_name,
    load_teacher,
    parse_dtype,
    resolve_device,
)

OFFLOAD_WORDS = {"auto": None, "yes": True, "no": False}
# `--offload auto|yes|no` for the engine's offload=None|True|False
OFFLOAD = tyro.constructors.PrimitiveConstructorSpec(
    nargs=1,
    metavar="{auto,yes,no}",
    instance_from_str=lambda args: OFFLOAD_WORDS[args[0]],
    is_instance=lambda value: value is None or isinstance(value, bool),
    str_from_instance=lambda value: [next(k for k, v in OFFLOAD_WORDS.items() if v is value)],
    choices=tuple(OFFLOAD_WORDS),
)


@dataclass(frozen=True)
class TeacherOptions:
    """Model, numerics and StyleID settings of a teacher run."""

    model: str = "tiny"
    """tiny | sd15-random | a Hugging Face id | a local diffusers directory"""
    revision: str | None = None
    """model revision on the Hub"""
    dtype: Annotated[
        str, tyro.conf.arg(help=f"auto = float16 on GPU, float32 on CPU; or {' | '.join(DTYPES)}")
    ] = "auto"
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    styleid: Annotated[StyleIDConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StyleIDConfig
    )
    offload: Annotated[bool | None, OFFLOAD] = None
    """keep attention features in pinned CPU memory (auto: decided per tile from free GPU memory)"""
    digest: tyro.conf.Suppress[str | None] = None  # a model folder's content digest, by `pinned`

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.dtype != "auto":
            parse_dtype(self.dtype)

    def resolved_dtype(self, device: torch.device) -> str:
        """`auto` is float16 on a GPU and float32 on the CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "float16" if device.type == "cuda" else "float32"

    def pinned(self) -> TeacherOptions:
        """These options with the model checked and pinned to exact weights, for a run whose
        actors load it later on other machines: a folder becomes an absolute path named by its
        content digest, a Hub id's revision the commit it resolves to now (`UserError` if the
        model cannot be read)."""
        if self.model in PRESETS:
            return self
        pinned = pin_model(self.model, self.revision)
        return replace(self, model=pinned.name, revision=pinned.revision, digest=pinned.digest)

    def hash(self, device: torch.device) -> str:
        """The teacher hash of targets this teacher makes on `device`'s kind of hardware; a
        pinned folder counts by its digest, not by where it lies."""
        model = f"sha256:{self.digest}" if self.digest else self.model
        return teacher_hash(self.styleid, model, self.revision, self.resolved_dtype(device))

    def build(self) -> StyleIDEngine:
        """Load the model on this process's device and wrap it in an engine."""
        device = resolve_device(self.device)
        dtype = parse_dtype(self.resolved_dtype(device))
        teacher = load_teacher(self.model, dtype, device, self.revision, seed=self.styleid.seed)
        return StyleIDEngine(teacher, self.styleid, offload=self.offload)
