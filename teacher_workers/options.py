"""Which teacher to run and how: the options every teacher command shares, as one typed object.

Two teachers share the service: StyleID (a style *image* per pair) and LSAST (a learned style
*prompt file* per pair, see jobs.learn_style). `TeacherOptions` is small and picklable, so a
driver validates it once and ships it to Ray actors, which build their own engine on their own
GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Literal, get_args

import torch
import tyro

from common.cli import choice_flag
from common.errors import UserError
from common.ids import config_hash
from teacher_workers.lsast.config import DEFAULT_CONTROLNET, LSAST_ENGINE_VERSION, LSASTConfig
from teacher_workers.lsast.control import TINY_CONTROLNET, check_controlnet_name
from teacher_workers.lsast.prompts import STAGE_INDEXING, StageIndexing
from teacher_workers.model_source import (
    DEFAULT_MODEL_ID,
    is_single_file,
    pin_controlnet,
    pin_model,
)
from teacher_workers.models import (
    DTYPES,
    PRESETS,
    check_model_name,
    load_teacher,
    parse_dtype,
    resolve_device,
    tune,
)
from teacher_workers.styleid.config import StyleIDConfig, teacher_hash
from teacher_workers.styleid.engine import StyleIDEngine

if TYPE_CHECKING:
    from teacher_workers.lsast.engine import LSASTEngine

Teacher = Literal["styleid", "lsast"]
TEACHERS = get_args(Teacher)
STAGE_INDEXING_FLAG = choice_flag("--stage-indexing", STAGE_INDEXING)
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


@dataclass(frozen=True, kw_only=True)
class LSASTFlags:
    """The LSAST teacher's own flags (`--teacher lsast`, or jobs.evaluate's `--also-teacher
    lsast`); `TeacherOptions.chosen` folds them and the shared --steps, --resolution, --seed and
    --batch-size into the run's `LSASTConfig`."""

    # each named as its `LSASTConfig` field (`canny`: canny_low, canny_high): `chosen` passes all
    controlnet: Annotated[
        str | None,
        tyro.conf.arg(
            help="canny ControlNet: Hub id, folder or tiny (ControlNetModel.from_unet of the "
            f"model); none: {DEFAULT_CONTROLNET}, or tiny for a preset --model"
        ),
    ] = None
    controlnet_revision: str | None = None
    """revision of the --controlnet Hub id (pinned to its commit for the run)"""
    strength: float = LSASTConfig.strength
    """img2img strength"""
    guidance: float = LSASTConfig.guidance
    """classifier-free guidance"""
    control_scale: float = LSASTConfig.control_scale
    """ControlNet scale"""
    canny: Annotated[tuple[int, int], tyro.conf.arg(metavar="LOW HIGH")] = (
        LSASTConfig.canny_low,
        LSASTConfig.canny_high,
    )
    """canny edge thresholds"""
    stage_indexing: Annotated[StageIndexing, STAGE_INDEXING_FLAG] = LSASTConfig.stage_indexing
    """code: the released code's sliding window; paper: 10 stages x 3 groups"""
    prompt_dropout: bool = LSASTConfig.prompt_dropout
    """keep the generator's dropout on (seeded)"""


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
        str, tyro.conf.arg(help=f"auto = float16 on GPU, float32 on CPU; or {' | '.join(DTYPES)}")
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
    kind: Annotated[Teacher, tyro.conf.arg(name="teacher"), choice_flag("--teacher", TEACHERS)] = (
        "styleid"
    )
    """styleid: a style image per pair; lsast: a learned style (--style-prompts)"""
    lsast: tyro.conf.Suppress[LSASTConfig] = field(default_factory=LSASTConfig)
    # flags only, applied by `chosen`: shared by both teachers with their own defaults
    seed: Annotated[
        int | None,
        tyro.conf.arg(help=f"none: {StyleIDConfig.seed} (StyleID), {LSASTConfig.seed} (LSAST)"),
    ] = None
    batch_size: Annotated[
        int | None,
        tyro.conf.arg(
            help=f"pairs per UNet call (none: {StyleIDConfig.batch_size} StyleID, "
            f"{LSASTConfig.batch_size} LSAST)"
        ),
    ] = None
    lsast_flags: Annotated[LSASTFlags, tyro.conf.OmitArgPrefixes] = field(
        default_factory=LSASTFlags
    )

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.model_config and not is_single_file(self.model):
            raise UserError("--model-config applies to single-file checkpoints (*.safetensors)")
        if self.dtype != "auto":
            parse_dtype(self.dtype)
        if self.kind not in TEACHERS:
            raise UserError(f"--teacher must be one of {', '.join(TEACHERS)}, got {self.kind!r}")
        if self.kind == "lsast":
            check_controlnet_name(self.lsast.controlnet)

    def chosen(self) -> TeacherOptions:
        """The teacher the command-line flags choose: --seed and --batch-size (defaults per
        teacher) into its config, and for LSAST the shared --steps and --resolution too."""
        seed, batch = self.seed, self.batch_size
        styleid = replace(
            self.styleid,
            seed=self.styleid.seed if seed is None else seed,
            batch_size=batch or self.styleid.batch_size,
        )
        lsast = self.lsast
        if self.kind == "lsast":
            flags = asdict(self.lsast_flags)  # every flag, under its config field's name
            flags["canny_low"], flags["canny_high"] = flags.pop("canny")
            default_net = TINY_CONTROLNET if self.model in PRESETS else DEFAULT_CONTROLNET
            flags["controlnet"] = flags["controlnet"] or default_net
            lsast = LSASTConfig(
                steps=self.styleid.steps,
                resolution=self.styleid.resolution,
                seed=LSASTConfig.seed if seed is None else seed,
                batch_size=batch or LSASTConfig.batch_size,
                **flags,
            )
        return replace(
            self,
            styleid=styleid,
            lsast=lsast,
            seed=None,
            batch_size=None,
            lsast_flags=LSASTFlags(),
        )

    @property
    def resolution(self) -> int:
        """The square size the teacher works at."""
        return self.lsast.resolution if self.kind == "lsast" else self.styleid.resolution

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
        a model (`UserError` if the model cannot be read). LSAST's ControlNet is pinned the
        same way (a `tiny` one is made from the model, so the model pins it)."""
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
        if self.kind != "lsast" or self.lsast.controlnet == TINY_CONTROLNET:
            return options
        controlnet = pin_controlnet(self.lsast.controlnet, self.lsast.controlnet_revision)
        lsast = replace(
            self.lsast,
            controlnet=controlnet.name,
            controlnet_revision=controlnet.revision,
            controlnet_digest=controlnet.digest,
        )
        return replace(options, lsast=lsast)

    def hash(self, device: torch.device) -> str:
        """The teacher hash of targets this teacher makes on `device`'s kind of hardware; a
        pinned folder or file counts by its digest (which covers all it reads), not by where it
        lies or which config revision pointed to it."""
        if self.digest:
            model, revision = f"sha256:{self.digest}", None
        else:
            model, revision = self.model, self.revision
        dtype = self.resolved_dtype(device)
        if self.kind == "styleid":
            return teacher_hash(self.styleid, model, revision, dtype)
        fields = {"model": model, "revision": revision, "dtype": dtype}
        fields |= self.lsast.output_fields()
        return config_hash({"teacher": "lsast", "engine": LSAST_ENGINE_VERSION, **fields})

    def build(self) -> StyleIDEngine | LSASTEngine:
        """Load the model on this process's device and wrap it in the teacher's engine."""
        device = resolve_device(self.device)
        dtype = parse_dtype(self.resolved_dtype(device))
        if self.kind == "lsast":
            from teacher_workers.lsast.control import load_controlnet
            from teacher_workers.lsast.engine import LSASTEngine

            teacher = load_teacher(
                self.model,
                dtype,
                device,
                self.revision,
                config=self.model_config,
                text_encoder=True,
            )
            controlnet = load_controlnet(
                self.lsast.controlnet, teacher.unet, dtype, device, self.lsast.controlnet_revision
            )
            tune(teacher.unet, self.compile, self.channels_last)
            tune(controlnet, self.compile, self.channels_last)
            return LSASTEngine(teacher, controlnet, self.lsast)
        teacher = load_teacher(
            self.model, dtype, device, self.revision, self.styleid.seed, self.model_config
        )
        tune(teacher.unet, self.compile, self.channels_last)
        return StyleIDEngine(teacher, self.styleid, offload=self.offload)
