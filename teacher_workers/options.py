"""Which teacher to run and how: the options every teacher command shares, as one typed object.

Two teachers share the service: StyleID (a style *image* per pair) and LSAST (a learned style
*prompt file* per pair, see jobs.learn_style). `TeacherOptions` is small and picklable, so a
driver validates it once and ships it to Ray actors, which build their own engine on their own
GPU.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from common.errors import UserError
from common.ids import config_hash
from teacher_workers.config import DEFAULT_LAYERS, StyleIDConfig, teacher_hash
from teacher_workers.engine import StyleIDEngine
from teacher_workers.lsast_config import DEFAULT_CONTROLNET, LSAST_ENGINE_VERSION, LSASTConfig
from teacher_workers.lsast_control import TINY_CONTROLNET, check_controlnet_name
from teacher_workers.lsast_prompts import STAGE_INDEXING
from teacher_workers.model_source import DEFAULT_MODEL_ID, is_single_file, pin_model
from teacher_workers.models import (
    DTYPES,
    PRESETS,
    check_model_name,
    load_teacher,
    parse_dtype,
    resolve_device,
)

if TYPE_CHECKING:
    from teacher_workers.lsast_engine import LSASTEngine

TEACHERS = ("styleid", "lsast")


@dataclass(frozen=True)
class TeacherOptions:
    """Model, numerics and the settings of the teacher that runs (`kind`)."""

    model: str = "tiny"
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    styleid: StyleIDConfig = field(default_factory=StyleIDConfig)
    offload: bool | None = None
    digest: str | None = None  # a model folder's or file's content digest, set by `pinned`
    model_config: str | None = None  # a single file's config folder or Hub id
    kind: str = "styleid"
    lsast: LSASTConfig = field(default_factory=LSASTConfig)

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
        a model (`UserError` if the model cannot be read)."""
        if self.model in PRESETS:
            return self
        pinned = pin_model(self.model, self.revision, self.model_config)
        return replace(
            self,
            model=pinned.name,
            revision=pinned.revision,
            digest=pinned.digest,
            model_config=pinned.config,
        )

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
            from teacher_workers.lsast_control import load_controlnet
            from teacher_workers.lsast_engine import LSASTEngine

            teacher = load_teacher(
                self.model,
                dtype,
                device,
                self.revision,
                config=self.model_config,
                text_encoder=True,
            )
            controlnet = load_controlnet(self.lsast.controlnet, teacher.unet, dtype, device)
            return LSASTEngine(teacher, controlnet, self.lsast)
        teacher = load_teacher(
            self.model, dtype, device, self.revision, self.styleid.seed, self.model_config
        )
        return StyleIDEngine(teacher, self.styleid, offload=self.offload)


def add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """The teacher flags shared by `jobs.stylize` and `jobs.generate`."""
    group = parser.add_argument_group("teacher")
    group.add_argument(
        "--teacher",
        choices=TEACHERS,
        default="styleid",
        help="styleid: a style image per pair; lsast: a learned style (--style-prompts)",
    )
    group.add_argument(
        "--model",
        default="tiny",
        help="tiny | sd15-random | a Hugging Face id | a local diffusers directory | "
        "a single-file SD 1.x checkpoint (*.safetensors, original LDM layout)",
    )
    group.add_argument(
        "--model-config",
        default=None,
        metavar="DIR|HF_ID",
        help=f"configs, tokenizer and scheduler of a single-file --model: an SD 1.x diffusers "
        f"folder (its weights are not read) or a Hub id read from the local Hugging Face cache "
        f"only (default {DEFAULT_MODEL_ID})",
    )
    group.add_argument(
        "--revision", default=None, help="revision of the Hub id (--model or --model-config)"
    )
    group.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help="auto = float16 on GPU, float32 on CPU",
    )
    group.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    group.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    group.add_argument("--gamma", type=float, default=0.75, help="query preservation")
    group.add_argument(
        "--T", dest="temperature", type=float, default=1.5, help="attention temperature"
    )
    group.add_argument("--resolution", type=int, default=512, help="square teacher resolution")
    group.add_argument(
        "--layers",
        nargs="+",
        default=list(DEFAULT_LAYERS),
        help="injected self-attention layers (diffusers module names)",
    )
    group.add_argument("--no-adain", action="store_true", help="ablation: no initial AdaIN")
    group.add_argument("--no-injection", action="store_true", help="ablation: no K/V injection")
    group.add_argument(
        "--encode",
        default="mean",
        choices=("mean", "sample"),
        help="VAE posterior mean, or a seeded sample",
    )
    group.add_argument("--seed", type=int, default=None, help="default: 0 (StyleID), 41 (LSAST)")
    group.add_argument(
        "--batch-size", type=int, default=None, help="pairs per UNet call (8 StyleID, 4 LSAST)"
    )
    group.add_argument(
        "--offload",
        choices=("auto", "yes", "no"),
        default="auto",
        help="keep attention features in pinned CPU memory",
    )
    lsast = parser.add_argument_group("LSAST teacher (--teacher lsast)")
    lsast.add_argument(
        "--controlnet",
        default=None,
        help=f"canny ControlNet: Hub id, folder or tiny (ControlNetModel.from_unet of the "
        f"model); default {DEFAULT_CONTROLNET}, or tiny for a preset --model",
    )
    lsast.add_argument("--strength", type=float, default=0.7, help="img2img strength")
    lsast.add_argument("--guidance", type=float, default=10.0, help="classifier-free guidance")
    lsast.add_argument("--control-scale", type=float, default=1.0, help="ControlNet scale")
    lsast.add_argument("--canny", type=int, nargs=2, default=[100, 200], metavar=("LOW", "HIGH"))
    lsast.add_argument(
        "--stage-indexing",
        choices=STAGE_INDEXING,
        default="code",
        help="code: the released code's sliding window; paper: 10 stages x 3 groups",
    )
    lsast.add_argument(
        "--prompt-dropout", action="store_true", help="keep the generator's dropout on (seeded)"
    )


def teacher_options(args: argparse.Namespace) -> TeacherOptions:
    """Validated options from parsed flags (a bad value is a `UserError`)."""
    if args.teacher == "lsast":
        lsast = LSASTConfig(
            steps=args.steps,
            strength=args.strength,
            guidance=args.guidance,
            control_scale=args.control_scale,
            canny_low=args.canny[0],
            canny_high=args.canny[1],
            stage_indexing=args.stage_indexing,
            prompt_dropout=args.prompt_dropout,
            resolution=args.resolution,
            seed=41 if args.seed is None else args.seed,
            controlnet=args.controlnet
            or (TINY_CONTROLNET if args.model in PRESETS else DEFAULT_CONTROLNET),
            batch_size=args.batch_size or 4,
        )
        return TeacherOptions(
            args.model, args.revision, args.dtype, args.device, kind="lsast", lsast=lsast
        )
    styleid = StyleIDConfig(
        steps=args.steps,
        gamma=args.gamma,
        temperature=args.temperature,
        layers=tuple(args.layers),
        adain=not args.no_adain,
        inject=not args.no_injection,
        resolution=args.resolution,
        encode=args.encode,
        seed=args.seed or 0,
        batch_size=args.batch_size or 8,
    )
    offload = {"auto": None, "yes": True, "no": False}[args.offload]
    return TeacherOptions(
        args.model,
        args.revision,
        args.dtype,
        args.device,
        styleid,
        offload,
        model_config=args.model_config,
    )
