"""Typed configuration of a student training run, checked before any Ray work starts.

Value checks live in `TrainConfig.__post_init__`; checks that need I/O (does the `--init`
checkpoint exist?) are separate functions the entry point calls before building the trainer.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from common.cli import add_storage_option, positive_int
from common.errors import UserError
from common.storage import Storage, StorageOptions, absolute_url, open_fs
from student.backbone import ResNetEncoder, load_imagenet_resnet50
from student.losses import LOSS_WEIGHTS, load_vgg19_features
from student.model import SIZE_MULTIPLE, STYLE_LAYER, STTRConfig
from student.pretrained import RANDOM

BUILTIN_INITS = ("imagenet", "scratch")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class CrashOnce:
    """Testing hook: the last rank exits at the start of `epoch` unless `marker` exists.

    It creates `marker` first, so the restarted worker group trains on: this is how the tests
    prove that a lost worker resumes from the last checkpoint.
    """

    epoch: int
    marker: str


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; `batch_size` is per worker."""

    data: str
    name: str
    teacher_hash: str | None = None
    # may hold credentials: kept out of repr, which Ray shows as the run's loop config
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    workers: int = 1
    gpu: bool = False
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    crop_size: int = 256
    loss: str = "l1"
    init: str = "imagenet"
    # a path/URL the workers read (local paths made absolute), "random", or None: each node's
    # torch hub cache or torchvision's download (see student.pretrained)
    backbone_weights: str | None = None
    vgg_weights: str | None = None
    patience: int = 3
    lr_patience: int = 1
    lr_factor: float = 0.1
    seed: int = 0
    precision: str = "auto"
    loader_workers: int = 2
    max_failures: int = 3
    model: STTRConfig = field(default_factory=STTRConfig)
    crash_once: CrashOnce | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", absolute_url(self.data))
        if self.loss not in LOSS_WEIGHTS:
            raise UserError(f"--loss {self.loss!r}: expected one of {', '.join(LOSS_WEIGHTS)}")
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
        if self.precision not in PRECISIONS:
            raise UserError(
                f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}"
            )
        if self.precision in ("bf16", "fp16") and not self.gpu:
            raise UserError(f"--precision {self.precision} needs --gpu (autocast is GPU only)")
        if self.crop_size < SIZE_MULTIPLE or self.crop_size % SIZE_MULTIPLE:
            raise UserError(f"--crop-size {self.crop_size}: must be a multiple of {SIZE_MULTIPLE}")
        if not self.lr > 0:
            raise UserError(f"--lr {self.lr}: must be positive")
        if not 0 < self.lr_factor < 1:
            raise UserError(f"--lr-factor {self.lr_factor}: must be between 0 and 1")
        self._check_at_least(
            1,
            workers=self.workers,
            epochs=self.epochs,
            batch_size=self.batch_size,
            patience=self.patience,
        )
        self._check_at_least(0, lr_patience=self.lr_patience, loader_workers=self.loader_workers)
        self._check_at_least(-1, max_failures=self.max_failures)  # -1: retry without limit

    @staticmethod
    def _check_at_least(minimum: int, **values: int) -> None:
        for name, value in values.items():
            if value < minimum:
                raise UserError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")

    def storage(self) -> Storage:
        """The run root holding the data, and the checkpoints under train/<name>/."""
        return Storage(self.data, self.storage_options)

    @property
    def init_is_path(self) -> bool:
        """Whether `init` names the authors' checkpoint rather than a built-in initialisation."""
        return self.init not in BUILTIN_INITS


def check_init(config: TrainConfig) -> None:
    """An `--init` checkpoint path must exist before any worker tries to load it."""
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
    if LOSS_WEIGHTS[config.loss][1]:
        load_vgg19_features(config.vgg_weights, config.storage_options)
    if not fresh or config.init != "imagenet":
        return config
    encoder = ResNetEncoder(STYLE_LAYER)  # the deeper encoder: every weight either one uses
    if load_imagenet_resnet50(config.backbone_weights, config.storage_options, encoder):
        return config
    return replace(config, init="scratch", backbone_weights=None)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `python -m jobs.train`."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train",
        description="Train the STTR student on teacher targets with Ray Train. Re-running the "
        "same --name on the same --data resumes from its last checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="run root URL with manifests/, targets/")
    parser.add_argument("--name", required=True, help="run name; output in <data>/train/<name>/")
    parser.add_argument("--teacher-hash", help="which teacher's targets (needed if several)")
    add_storage_option(parser)
    parser.add_argument("--workers", type=positive_int, default=1, help="Ray Train workers (DDP)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, autocast")
    parser.add_argument(
        "--precision",
        default="auto",
        help=f"one of {', '.join(PRECISIONS)}; auto = bf16 on GPUs that support "
        "it, else fp16 on GPU; fp32 on CPU",
    )
    parser.add_argument("--epochs", type=positive_int, default=100, help="most epochs to run")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per worker")
    parser.add_argument(
        "--lr",
        type=float,
        default=1e-4,
        help="initial Adam learning rate (a resumed run keeps its own)",
    )
    parser.add_argument(
        "--lr-patience",
        type=int,
        default=1,
        help="validation epochs without gain before the lr is reduced",
    )
    parser.add_argument("--lr-factor", type=float, default=0.1, help="lr reduction factor")
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=3,
        help="stop after this many validation epochs in which a reduced lr "
        "brought no gain (the paper: 3-4)",
    )
    parser.add_argument("--crop-size", type=int, default=256, help="training crop, multiple of 32")
    parser.add_argument("--loss", default="l1", help=f"one of {', '.join(LOSS_WEIGHTS)}")
    parser.add_argument(
        "--init",
        default="imagenet",
        help="imagenet, scratch, or the path of the authors' checkpoint0005.pth",
    )
    parser.add_argument(
        "--backbone-weights",
        help="torchvision ResNet-50 weights (path or URL) for --init imagenet "
        "(default: the torch hub cache, else a download unless HF_HUB_OFFLINE is set)",
    )
    parser.add_argument(
        "--vgg-weights",
        help="torchvision VGG19 weights (path or URL) for the Gram term of l2/l3, or 'random' "
        "(default: the torch hub cache, else a download unless HF_HUB_OFFLINE is set)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds model init, crops and order")
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader processes")
    parser.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="worker-group restarts from the last checkpoint before giving up",
    )
    parser.add_argument(
        "--enc-layers",
        type=positive_int,
        default=STTRConfig.enc_layers,
        help="transformer encoder layers (the authors' checkpoint needs 6)",
    )
    parser.add_argument(
        "--dec-layers",
        type=positive_int,
        default=STTRConfig.dec_layers,
        help="transformer decoder layers (the authors' checkpoint needs 6)",
    )
    parser.add_argument(
        "--dim-feedforward",
        type=positive_int,
        default=STTRConfig.dim_feedforward,
        help="transformer FFN width",
    )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse and validate the command line; a bad value raises `UserError`."""
    args = build_parser().parse_args(argv)
    model = STTRConfig(
        enc_layers=args.enc_layers, dec_layers=args.dec_layers, dim_feedforward=args.dim_feedforward
    )
    return TrainConfig(
        data=args.data,
        name=args.name,
        teacher_hash=args.teacher_hash,
        storage_options=StorageOptions(tuple(args.storage_option)),
        workers=args.workers,
        gpu=args.gpu,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        crop_size=args.crop_size,
        loss=args.loss,
        init=args.init,
        backbone_weights=args.backbone_weights,
        vgg_weights=args.vgg_weights,
        patience=args.patience,
        lr_patience=args.lr_patience,
        lr_factor=args.lr_factor,
        seed=args.seed,
        precision=args.precision,
        loader_workers=args.loader_workers,
        max_failures=args.max_failures,
        model=model,
    )
