"""Which teacher to run and how: the options every teacher command shares, as one typed object.

The model, numerics and placement are every teacher's; `--teacher` picks one from the registry
(StyleID: a style *image* per pair; LSAST: a learned style *prompt file* per pair, see
jobs.learn_style; student: a trained student network, a style image per pair), whose own config
is a field here and which answers the rest (`Teacher`).
`TeacherOptions` is small and picklable, so a driver validates it once and ships it to Ray
actors, which build their own engine on their own GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated

import tyro

from common.cli import check_at_least, choice_flag
from common.errors import UserError
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.model_choice import (
    DTYPE_NAMES,
    PRESETS,
    check_dtype,
    check_model_name,
    text_width,
)
from teacher_workers.model_source import (
    DEFAULT_MODEL_ID,
    is_single_file,
    pin_model,
)
from teacher_workers.registry import TEACHERS, get_teacher
from teacher_workers.student_teacher.config import StudentTeacherConfig
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.teacher import Engine, Teacher

if TYPE_CHECKING:  # loaded by `build`, not by parsing a command line
    import torch

OFFLOAD_WORDS = {"auto": None, "yes": True, "no": False}
OFFLOAD_WORD = choice_flag("--offload", tuple(OFFLOAD_WORDS))
# `--offload auto|yes|no` for the engine's offload=None|True|False
OFFLOAD = tyro.constructors.PrimitiveConstructorSpec(
    nargs=1,
    metavar=OFFLOAD_WORD.metavar,
    instance_from_str=lambda args: OFFLOAD_WORDS[OFFLOAD_WORD.instance_from_str(args)],
    is_instance=lambda value: value is None or isinstance(value, bool),
    str_from_instance=lambda value: [next(k for k, v in OFFLOAD_WORDS.items() if v is value)],
)


@dataclass(frozen=True)
class TeacherOptions:
    """Model, numerics and the settings of the teacher that runs (--teacher)."""

    model: Annotated[
        str,
        tyro.conf.arg(
            help="tiny | sd15-random | a Hugging Face id | a local diffusers directory | "
            "a single-file SD 1.x checkpoint (*.safetensors, original LDM layout)"
        ),
    ] = "tiny"
    revision: str | None = None
    """revision of the Hub id (--model or --model-config)"""
    dtype: Annotated[
        str,
        tyro.conf.arg(help="auto = float16 on GPU, float32 on CPU; or " + " | ".join(DTYPE_NAMES)),
    ] = "auto"
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    styleid: Annotated[StyleIDConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StyleIDConfig
    )
    offload: Annotated[bool | None, OFFLOAD] = None
    """keep attention features in pinned CPU memory (auto: decided per tile from free GPU memory)"""
    # the first call of each shape pays the compile; outputs are the same within float
    # tolerance, so the teacher hash ignores it
    compile: bool = False
    """torch.compile the teacher's UNet (and ControlNet), or jobs.stylize's student (GPUs)"""
    channels_last: bool = False
    """run the UNet's convolutions in channels-last layout (faster on tensor cores)"""
    digest: tyro.conf.Suppress[str | None] = None  # a model or file's digest, set by `pinned`
    model_config: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="DIR|HF_ID",
            help="configs, tokenizer and scheduler of a single-file --model: an SD 1.x diffusers "
            "folder (its weights are not read) or a Hub id read from the local Hugging Face cache "
            f"only (none: {DEFAULT_MODEL_ID})",
        ),
    ] = None
    kind: Annotated[
        str, tyro.conf.arg(name="teacher"), choice_flag("--teacher", tuple(TEACHERS))
    ] = "styleid"
    """styleid: a style image per pair; lsast: a learned style (--style-prompts); student: a
    trained student network (--teacher-student), a style image per pair"""
    lsast: Annotated[LSASTConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=LSASTConfig)
    student_teacher: Annotated[StudentTeacherConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StudentTeacherConfig
    )
    # flags only, folded into the teacher's config by `chosen`: shared, with defaults per teacher
    seed: Annotated[
        int | None,
        tyro.conf.arg(help=f"none: {StyleIDConfig.seed} (StyleID), {LSASTConfig.seed} (LSAST)"),
    ] = None
    batch_size: Annotated[
        int | None,
        tyro.conf.arg(
            help=f"pairs per UNet call or forward pass (none: {StyleIDConfig.batch_size} "
            f"StyleID, {LSASTConfig.batch_size} LSAST, {StudentTeacherConfig.batch_size} student)"
        ),
    ] = None

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.model_config and not is_single_file(self.model):
            raise UserError("--model-config applies to single-file checkpoints (*.safetensors)")
        if self.dtype != "auto":
            check_dtype(self.dtype)
        if self.batch_size is not None:
            check_at_least(1, batch_size=self.batch_size)  # 0 is no "default"
        self.teacher.check(self)

    @property
    def teacher(self) -> Teacher:
        """The teacher these options run (--teacher)."""
        return get_teacher(self.kind)

    def chosen(self) -> TeacherOptions:
        """The teacher the command-line flags choose: --seed and --batch-size (defaults per
        teacher) into its config, and for LSAST the shared --steps and --resolution too."""
        seed, batch = self.seed, self.batch_size
        styleid = replace(
            self.styleid,
            seed=self.styleid.seed if seed is None else seed,
            batch_size=self.styleid.batch_size if batch is None else batch,
        )
        options = self.teacher.chosen(replace(self, styleid=styleid))
        return replace(options, seed=None, batch_size=None)

    @property
    def resolution(self) -> int:
        """The square size the teacher works at."""
        return self.teacher.resolution(self)

    def text_width(self) -> int | None:
        """The width of the model's text encoder, which LSAST's learned prompts must have
        (None where its config cannot be read here)."""
        return text_width(self.model, self.revision, self.model_config)

    def resolved_dtype(self, device: torch.device) -> str:
        """`auto` is float16 on a GPU and float32 on the CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "float16" if device.type == "cuda" else "float32"

    def pinned(self) -> TeacherOptions:
        """These options with the model checked and pinned to exact weights, for a run whose
        actors load it later on other machines: a folder becomes an absolute path named by its
        content digest, a Hub id's revision the commit it resolves to now, a single file an
        absolute path named by the digest of its bytes and configs, with its config pinned like
        a model (`UserError` if the model cannot be read); then the teacher pins what else it
        reads."""
        options = self
        if self.model not in PRESETS:
            model = pin_model(self.model, self.revision, self.model_config)
            options = replace(
                self,
                model=model.name,
                revision=model.revision,
                digest=model.digest,
                model_config=model.config,
            )
        return self.teacher.pinned(options)

    def hash(self, device: torch.device) -> str:
        """The teacher hash of targets this teacher makes on `device`'s kind of hardware; a
        pinned folder or file counts by its digest (which covers all it reads), not by where it
        lies or which config revision pointed to it."""
        if self.digest:
            model, revision = f"sha256:{self.digest}", None
        else:
            model, revision = self.model, self.revision
        return self.teacher.hash(self, model, revision, self.resolved_dtype(device))

    def build(self) -> Engine:
        """Load the model on this process's device and wrap it in the teacher's engine."""
        from teacher_workers.models import parse_dtype, resolve_device

        device = resolve_device(self.device)
        return self.teacher.build(self, device, parse_dtype(self.resolved_dtype(device)))

    def tile(self, gpu_memory_gb: float) -> tuple[int, int]:
        """Contents x styles per work unit on a GPU of `gpu_memory_gb`."""
        return self.teacher.tile(self, gpu_memory_gb)
