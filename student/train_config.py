"""Typed configuration of a student training run, checked before any Ray work starts.

Value checks live in `TrainConfig.__post_init__`; checks that need I/O (does the `--init`
checkpoint exist?) are separate functions the entry point calls before building the trainer.
This module loads no torch (the networks load in those checks), so `--help` needs none.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import tyro

from common.cli import check_at_least, choice_flag
from common.errors import UserError
from common.ray_train import RayTrainConfig
from common.storage import Storage, StorageOptions, absolute_url, open_fs
from student.architectures import ARCHS, Arch, StudentConfig
from student.choices import LOSS_WEIGHTS, RANDOM
from student.decoded_cache import DecodedCache
from student.microast_config import MicroASTConfig
from student.microast_weights import AUTHORS
from student.model_config import SIZE_MULTIPLE, STYLE_LAYER, STTRConfig

BUILTIN_INITS = ("imagenet", "scratch", AUTHORS)
DEFAULT_INIT = {"sttr": "imagenet", "microast": "scratch"}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
Loss = Literal[tuple(LOSS_WEIGHTS)]  # type: ignore[valid-type]
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class TrainConfig(RayTrainConfig):
    """Everything a training run needs; `batch_size` is per worker."""

    data: str
    """run root URL with manifests/ and targets/"""
    name: str
    """run name; output in <data>/train/<name>/ (the same name again resumes it)"""
    teacher_hash: str | None = None
    """which teacher's targets (needed if several)"""
    storage_options: Annotated[StorageOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StorageOptions,
        repr=False,  # credentials stay out of what Ray shows
    )
    epochs: int = 100
    """most epochs to run"""
    batch_size: int = 8
    """images per worker"""
    lr: float = 1e-4
    """initial Adam learning rate (a resumed run keeps its own)"""
    crop_size: int = 256
    """training crop, multiple of 32"""
    arch: Annotated[Arch, choice_flag("--arch", ARCHS)] = "sttr"
    """student architecture: sttr (45.6M parameters) or microast (0.47M)"""
    loss: Annotated[Loss, choice_flag("--loss", tuple(LOSS_WEIGHTS))] = "l1"
    """pixel MSE, plus a VGG19 Gram term for l2/l3 (weights 0.5:0.5, 0.7:0.3)"""
    init: str | None = None
    """sttr: imagenet (default), scratch, or the path of the authors' checkpoint0005.pth;
    microast: scratch (default), authors (the shipped released weights), or a folder (path or
    URL) with the authors' four .pth.tar files"""
    backbone_weights: str | None = None
    """ResNet-50 weights (path or URL) for --init imagenet (none: torch hub cache or download)"""
    vgg_weights: str | None = None
    """VGG19 weights (path or URL) for l2/l3, or 'random' (none: torch hub cache or download)"""
    patience: int = 3
    """stop after this many validation epochs in which a reduced lr brought no gain (paper: 3-4)"""
    lr_patience: int = 1
    """validation epochs without gain before the lr is reduced"""
    lr_factor: float = 0.1
    """lr reduction factor"""
    seed: int = 0
    """seeds model init, crops and order"""
    precision: Annotated[Precision, choice_flag("--precision", PRECISIONS)] = "auto"
    """auto: bf16 on GPUs that have it, else fp16; fp32 on CPU"""
    compile: bool = False
    """torch.compile the student (GPU: the first steps pay the compile; checkpoints unchanged)"""
    loader_workers: int = 2
    """DataLoader processes"""
    decoded_cache: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="DIR",
            help="local folder (on every node, made absolute) where each training image is kept "
            "decoded after its first read, so later epochs skip PNG decoding (several times more "
            "samples per core)",
        ),
    ] = None
    keep_checkpoints: int = 1
    """checkpoints kept with the lowest validation loss, besides the latest (to resume from)"""
    model: Annotated[STTRConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=STTRConfig)
    microast: Annotated[MicroASTConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=MicroASTConfig
    )
    tensorboard: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="URL",
            help="TensorBoard log dir shared by runs (path or URL, e.g. the one a TensorBoard "
            "server watches): the run's event files go to URL/<name>/; without it, to "
            "<data>/train/<name>/tensorboard/",
        ),
    ] = None
    # set by jobs.train when the run's latest checkpoint cannot be read: the newest kept
    # checkpoint that can, which the workers resume from instead (writing the epochs they
    # train again to new folders: `WorkerRun.checkpoint_name`)
    resume_from: tyro.conf.Suppress[str | None] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "data", absolute_url(self.data))
        if self.init is None:
            object.__setattr__(self, "init", DEFAULT_INIT[self.arch])
        elif self.init_is_path:  # workers may run elsewhere than this directory
            object.__setattr__(self, "init", absolute_url(self.init))
        self._check_init_fits_arch()
        if self.decoded_cache:
            object.__setattr__(self, "decoded_cache", os.path.abspath(self.decoded_cache))
        if self.tensorboard:
            object.__setattr__(self, "tensorboard", absolute_url(self.tensorboard))
        for name in ("backbone_weights", "vgg_weights"):
            value = getattr(self, name)
            if value and value != RANDOM:
                object.__setattr__(self, name, absolute_url(value))
        if self.backbone_weights and self.init != "imagenet":
            raise UserError(f"--backbone-weights is for --init imagenet, not --init {self.init}")
        if self.vgg_weights and not LOSS_WEIGHTS[self.loss][1]:
            raise UserError(f"--vgg-weights: --loss {self.loss} has no Gram term, so no VGG19")
        if not NAME_PATTERN.fullmatch(self.name):
            raise UserError(f"--name {self.name!r}: use letters, digits, '.', '_' or '-'")
        if self.precision in ("bf16", "fp16") and not self.gpu:
            raise UserError(f"--precision {self.precision} needs --gpu (autocast is GPU only)")
        if self.crop_size < SIZE_MULTIPLE or self.crop_size % SIZE_MULTIPLE:
            raise UserError(f"--crop-size {self.crop_size}: must be a multiple of {SIZE_MULTIPLE}")
        if not self.lr > 0:
            raise UserError(f"--lr {self.lr}: must be positive")
        if not 0 < self.lr_factor < 1:
            raise UserError(f"--lr-factor {self.lr_factor}: must be between 0 and 1")
        check_at_least(
            1,
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
            keep_checkpoints=self.keep_checkpoints,
        )
        check_at_least(0, lr_patience=self.lr_patience, loader_workers=self.loader_workers)

    def _check_init_fits_arch(self) -> None:
        """`--init imagenet` is STTR's and `--init authors` MicroAST's (STTR's authors'
        checkpoint is passed by its path)."""
        own = {"sttr": "imagenet", "microast": AUTHORS}[self.arch]
        if self.init in ("imagenet", AUTHORS) and self.init != own:
            raise UserError(
                f"--init {self.init} is not for --arch {self.arch}: use scratch, {own} or a path"
            )

    def student_config(self) -> StudentConfig:
        """The config of the student this run trains (`model` or `microast`, by `arch`)."""
        return self.model if self.arch == "sttr" else self.microast

    def cache(self) -> DecodedCache | None:
        """The `--decoded-cache` folder, or None to decode every epoch."""
        return DecodedCache(self.decoded_cache) if self.decoded_cache else None

    def storage(self) -> Storage:
        """The run root holding the data, and the checkpoints under train/<name>/."""
        return Storage(self.data, self.storage_options)

    def run_storage(self) -> Storage:
        """The run folder <data>/train/<name>/, where Ray Train keeps its record and
        checkpoints."""
        return Storage(self.storage().url(f"train/{self.name}"), self.storage_options)

    def tensorboard_url(self) -> str:
        """Where this run's TensorBoard event files go: `<tensorboard>/<name>`, so that one log
        dir (e.g. the one a TensorBoard server watches) holds many runs, each under its name;
        without `tensorboard`, the run folder's `tensorboard/`."""
        if self.tensorboard:
            return f"{self.tensorboard.rstrip('/')}/{self.name}"
        return self.run_storage().url("tensorboard")

    def tensorboard_storage(self) -> Storage:
        url = self.tensorboard_url()
        return Storage(url, self.storage_options)

    @property
    def init_is_path(self) -> bool:
        """Whether `init` names the authors' checkpoint rather than a built-in initialisation."""
        return self.init not in BUILTIN_INITS


def check_init(config: TrainConfig) -> None:
    """An `--init` checkpoint path must exist before any worker tries to load it; MicroAST's
    authors' weights are small, so they are loaded here in full (a file that does not fit is
    one error line naming it)."""
    from student.microast import build_microast

    if config.arch == "microast" and config.init != "scratch":
        build_microast(config.microast, config.init, config.storage_options)
        return
    if not config.init_is_path:
        return
    fs, path = open_fs(config.init, config.storage_options)
    if not fs.isfile(path):
        raise UserError(
            f"--init {config.init}: no such checkpoint file "
            f"(or use one of {', '.join(BUILTIN_INITS)})"
        )


def check_weights(config: TrainConfig, fresh: bool) -> TrainConfig:
    """Load the VGG19 and ResNet-50 weights the workers will load, once, before Ray starts.

    A missing or unfitting file (or, for l2/l3, no VGG19 at all) is one error line here rather
    than a failure in every worker. With no ImageNet ResNet-50 here either, this warns once and
    returns the config with `init="scratch"`, so the workers start from random encoders without
    looking (and warning) again. The encoders matter only to a `fresh` run, not a resumed one.
    """
    from student.backbone import ResNetEncoder, load_imagenet_resnet50
    from student.losses import load_vgg19_features

    if LOSS_WEIGHTS[config.loss][1]:
        load_vgg19_features(config.vgg_weights, config.storage_options)
    if not fresh or config.init != "imagenet":
        return config
    encoder = ResNetEncoder(STYLE_LAYER)  # the deeper encoder: every weight either one uses
    if load_imagenet_resnet50(config.backbone_weights, config.storage_options, encoder):
        return config
    return replace(config, init="scratch", backbone_weights=None)
