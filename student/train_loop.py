"""The loop Ray Train runs on every worker: DDP training, validation, checkpoints, early stop.

A checkpoint is the student (`model.safetensors` + `config.json`, see `student.checkpoint`)
plus `optimizer.pt` with the optimizer, scheduler, early-stop state, epoch and the metrics
history. Everything that decides the next epoch is in it, so a worker group restarted after a
failure, or a re-run of the same name, continues at the next epoch. A checkpoint that cannot
be restored is no failure a restart can fix: the workers end the run at once with its cause.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
import math
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Adam
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, DistributedSampler

from common.errors import UserError, first_line
from common.storage import Storage
from student.architectures import StudentConfig, build_student
from student.checkpoint import load_student, read_file, save_student
from student.dataset import Batch, Splits, TripleDataset, collate_triples
from student.image_space import imagenet_normalize
from student.losses import DistillationLoss, LossTerms, build_loss
from student.tracking import TensorBoardLog
from student.train_config import TrainConfig

logger = logging.getLogger(__name__)

STATE_FILE = "optimizer.pt"
METRICS_FILE = "metrics.jsonl"


def staging_folder(storage: Storage, name: str) -> Path:
    """Where rank 0 writes a checkpoint for Ray Train to copy to storage: one folder per run on
    each node, emptied before each use. A rank 0 killed during a report (a lost peer leaves it
    waiting there until Ray Train ends the group) runs no cleanup, and a new temporary folder
    per report would stay on the node's disk for good: 340 MB per lost worker for STTR."""
    digest = hashlib.sha256(storage.url(f"train/{name}").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"student-checkpoint-{digest}"


def metrics_key(name: str) -> str:
    """Key of a run's per-epoch metrics (JSON lines) under the data root."""
    return f"train/{name}/{METRICS_FILE}"


@dataclass
class EarlyStop:
    """The paper's stop rule: once the lr has been reduced, `patience` validation epochs
    without a new best loss end training (reducing the lr no longer helps)."""

    patience: int
    waiting: bool = False  # the lr was reduced and no new best has been seen since
    waited: int = 0

    def step(self, scheduler: ReduceLROnPlateau, val_loss: float) -> None:
        """Step the plateau scheduler and see whether the lr was reduced or the loss improved."""
        lr, best = scheduler.get_last_lr()[0], scheduler.best
        scheduler.step(val_loss)
        if scheduler.best < best:
            self.waiting, self.waited = False, 0
        elif self.waiting:
            self.waited += 1
        elif scheduler.get_last_lr()[0] < lr:
            self.waiting = True

    @property
    def should_stop(self) -> bool:
        return self.waiting and self.waited >= self.patience


@dataclass
class Totals:
    """Sums over one pass of one rank; `all_reduce` turns them into sums over all ranks."""

    mse: float = 0.0  # of the loss's weighted MSE term, times the images it was measured on
    gram: float = 0.0  # of its weighted Gram term, likewise
    images: int = 0
    skipped: int = 0

    def add(self, batch: Batch, terms: LossTerms) -> None:
        mse, gram = torch.stack([terms.mse, terms.gram]).tolist()
        self.mse += mse * batch.size
        self.gram += gram * batch.size
        self.images += batch.size

    def all_reduce(self, device: torch.device) -> Totals:
        values = torch.tensor(
            [self.mse, self.gram, self.images, self.skipped], device=device, dtype=torch.float64
        )
        if dist.is_initialized():
            dist.all_reduce(values)
        mse, gram, images, skipped = values.tolist()
        return Totals(mse, gram, int(images), int(skipped))

    def mean_losses(self, split: str) -> dict[str, float]:
        """`<split>_loss` and its terms `<split>_loss_mse` and `<split>_loss_gram` (which sum
        to it), as means over the pass's images."""
        what = {"train": "training", "val": "validation"}[split]
        if not self.images:
            raise RuntimeError(f"no readable {what} items this epoch (all were skipped)")
        mse, gram = self.mse / self.images, self.gram / self.images
        return {f"{split}_loss": mse + gram, f"{split}_loss_mse": mse, f"{split}_loss_gram": gram}


def all_ranks_have_data(batch: Batch, device: torch.device) -> bool:
    """Whether every rank got a usable batch: DDP needs all ranks to step together."""
    size = torch.tensor([batch.size], device=device)
    if dist.is_initialized():
        dist.all_reduce(size, op=dist.ReduceOp.MIN)
    return bool(size.item() > 0)


def autocast_dtype(config: TrainConfig) -> torch.dtype | None:
    """Mixed precision on GPUs only: bf16 where supported, else fp16 (with a grad scaler)."""
    if not config.gpu or config.precision == "fp32":
        return None
    if config.precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]


def seed_for(*parts: int) -> int:
    """A torch seed fixed by (seed, epoch, rank): dropout is reproducible across resumes."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def unwrap(model: nn.Module) -> nn.Module:
    """The student inside a DDP wrapper (checkpoints and evaluation use it directly)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class Restored(NamedTuple):
    """A checkpoint's student, its config and the training state saved by `WorkerRun.report`
    (None for a fresh student)."""

    student: nn.Module
    student_config: StudentConfig
    state: dict[str, Any] | None


def build_optimizer(model: nn.Module, config: TrainConfig) -> tuple[Adam, ReduceLROnPlateau]:
    optimizer = Adam(model.parameters(), lr=config.lr)
    scheduler = ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience)
    return optimizer, scheduler


def load_state(
    state: dict[str, Any],
    optimizer: Adam,
    scheduler: ReduceLROnPlateau,
    scaler: torch.amp.GradScaler,
    early: EarlyStop,
) -> tuple[int, list[dict[str, Any]]]:
    """Load a saved training state into these objects; returns its epoch and metrics history.
    A missing, mistyped or mismatched part raises (`KeyError`, `ValueError`, `TypeError`)."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    early.waiting, early.waited = state["early_stop"]
    if not isinstance(early.waiting, bool) or not isinstance(early.waited, int):
        raise ValueError(f"early stop state {state['early_stop']!r} is not [bool, int]")
    epoch, history = state["epoch"], state["history"]
    if not isinstance(epoch, int) or not isinstance(history, list) or len(history) != epoch:
        raise ValueError(f"epoch {epoch!r} does not match its metrics history")
    if not all(isinstance(record, dict) and "val_loss" in record for record in history):
        raise ValueError("its metrics history has records without a val_loss")
    return epoch, history


def load_checkpoint(
    url: str,
    config: TrainConfig,
    device: torch.device,
    fp16: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Restored:
    """The checkpoint at `url`, checked the way a worker resumes from it: its state is loaded
    into a throwaway optimizer, schedule and early stop (and grad scaler where `fp16`).

    The driver calls it before Ray starts and every worker again, so a damaged or foreign
    checkpoint is a `UserError` naming the file, never an error that Ray Train retries.
    """
    student, student_config = load_student(url, storage_options, device)
    storage = Storage(url, storage_options)
    data = read_file(storage, STATE_FILE)
    if not zipfile.is_zipfile(io.BytesIO(data)):  # torch's own error here is misleading
        raise UserError(f"{storage.url(STATE_FILE)} is not a file written by torch.save")
    try:
        state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        load_state(state, *build_optimizer(student, config), scaler, EarlyStop(config.patience))
    except Exception as exc:  # unpickling and load_state_dict raise many types on bad input
        raise UserError(
            f"{storage.url(STATE_FILE)} is not a training state of this student "
            f"({type(exc).__name__}: {first_line(exc)})"
        ) from None
    return Restored(student, student_config, state)


def finished(state: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a run with this saved state has nothing left to do (the loop of `fit`)."""
    early = EarlyStop(config.patience, *state["early_stop"])
    return state["epoch"] >= config.epochs or early.should_stop


def cannot_resume(config: TrainConfig, cause: UserError) -> UserError:
    """The one-line error for a checkpoint that cannot be resumed. Deleting only that
    checkpoint folder would not help: Ray Train's record of the run still names it."""
    return UserError(
        f"cannot resume {config.name!r}: {cause}; use a new --name, or delete "
        f"{config.run_storage().root} to start this run again"
    )


def same_error_on_all_ranks(error: UserError | None) -> None:
    """Raise the first rank's error on every rank, or nothing if no rank had one: a rank
    that could not restore must not leave the others waiting in DDP's first collective."""
    if not dist.is_initialized():
        if error is not None:
            raise error
        return
    messages: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(messages, None if error is None else str(error))
    first = next((message for message in messages if message is not None), None)
    if first is not None:
        raise UserError(first)


def fresh_student(config: TrainConfig) -> nn.Module:
    """A new student, identical on every rank and every run with the same seed."""
    torch.manual_seed(config.seed)
    return build_student(
        config.student_config(), config.init, config.backbone_weights, config.storage_options
    )


class WorkerRun:
    """One rank's model, optimizer, schedule and data; `fit` runs the remaining epochs."""

    def __init__(self, config: TrainConfig, splits: Splits) -> None:
        self.config = config
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.storage = config.storage()
        self.amp_dtype = autocast_dtype(config)
        # listed before restore_or_build's collective, so before any rank writes a checkpoint
        self.taken = self.run_folders() if config.resume_from else set()
        student, self.student_config, state = self.restore_or_build()
        self.space = student.space  # the pixel space the student reads and writes
        if config.compile:
            student.compile()  # in place: state_dict keys and checkpoints stay as they are
        self.model = ray.train.torch.prepare_model(student)
        self.optimizer, self.scheduler = build_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.fp16)
        self.early = EarlyStop(config.patience)
        self.epoch = self.resumed_from = 0
        self.history: list[dict[str, Any]] = []
        if state is not None:
            self.epoch, self.history = load_state(
                state, self.optimizer, self.scheduler, self.scaler, self.early
            )
            self.resumed_from = self.epoch
        self.loss_fn = self.build_loss().to(self.device)
        self.train_loader = self.loader(splits.train, True, splits.style_images)
        self.val_loader = self.loader(splits.val, False, splits.style_images)

    @property
    def fp16(self) -> bool:
        """Whether the grad scaler is on (fp16 autocast)."""
        return self.amp_dtype == torch.float16

    def build_loss(self) -> DistillationLoss:
        """The training loss; VGG19 weights this node cannot find (the driver could) are a
        `UserError` raised on every rank at once, so no rank waits for one that stopped."""
        config = self.config
        error: UserError | None = None
        loss = None
        try:
            loss = build_loss(config.loss, config.vgg_weights, config.storage_options)
        except UserError as exc:
            error = exc
        same_error_on_all_ranks(error)
        assert loss is not None
        return loss

    def restore_or_build(self) -> Restored:
        """The last checkpoint of this run name if there is one, else a fresh student.

        What a retry cannot fix (a damaged checkpoint, a bad `--init` file) is a `UserError`,
        raised on every rank at once; a failed download raises as itself and is retried.
        """
        error: UserError | None = None
        restored = None
        checkpoint = ray.train.get_checkpoint()
        try:
            if checkpoint is None:
                restored = Restored(fresh_student(self.config), self.config.student_config(), None)
            else:
                restored = self.load(checkpoint)
        except UserError as exc:
            error = exc if checkpoint is None else cannot_resume(self.config, exc)
        same_error_on_all_ranks(error)
        assert restored is not None
        if restored.student_config != self.config.student_config():
            logger.warning(
                "resuming with the checkpoint's model %s, not %s",
                restored.student_config,
                self.config.student_config(),
            )
        return restored

    def load(self, checkpoint: ray.train.Checkpoint) -> Restored:
        """Ray Train's latest checkpoint or, where that cannot be read, the kept one that
        jobs.train found readable (`resume_from`)."""
        try:
            with checkpoint.as_directory() as folder:
                return load_checkpoint(folder, self.config, self.device, self.fp16)
        except UserError:
            if not self.config.resume_from:
                raise
        options = self.config.storage_options
        return load_checkpoint(
            self.config.resume_from, self.config, self.device, self.fp16, options
        )

    def run_folders(self) -> set[str]:
        """The names of what the run folder holds as this attempt starts."""
        return {key.split("/")[0] for key in self.config.run_storage().list("")}

    def checkpoint_name(self) -> str:
        """`epoch-NNNN`. A run resumed from an older checkpoint than its latest (`resume_from`)
        writes into none of its folders: Ray Train's record still lists the later, unreadable
        checkpoints, and pruning one would delete the new checkpoint written into its folder.
        An epoch trained again goes to `epoch-NNNN.1` (or the next free number)."""
        name = f"epoch-{self.epoch:04d}"
        again = (f"{name}.{n}" for n in itertools.count(1))
        return name if name not in self.taken else next(x for x in again if x not in self.taken)

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "early_stop": [self.early.waiting, self.early.waited],
            "epoch": self.epoch,
            "history": self.history,
        }

    def loader(self, lines: list, train: bool, style_images: dict[str, list[str]]) -> DataLoader:
        """This rank's share of a split, in a seeded order that changes with the epoch."""
        dataset = TripleDataset(
            self.storage,
            lines,
            self.config.crop_size,
            train,
            self.config.seed,
            self.config.cache(),
            style_images,
        )
        sampler = DistributedSampler(
            dataset, num_replicas=self.world, rank=self.rank, shuffle=train, seed=self.config.seed
        )
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.loader_workers,
            collate_fn=collate_triples,
            pin_memory=self.device.type == "cuda",
        )

    def fit(self) -> str | None:
        """Run epochs until `--epochs` or the early stop; report each one to Ray Train.

        Returns why training stopped early when a retry cannot help: a loss that is no longer
        finite (every rank sees the same all-reduced loss, so all stop alike). That epoch is
        not reported, so no checkpoint with NaN weights is kept or resumed from."""
        with self.tensorboard() as board:
            while self.epoch < self.config.epochs and not self.early.should_stop:
                self.epoch += 1
                torch.manual_seed(seed_for(self.config.seed, self.epoch, self.rank))
                metrics = self.run_epoch()
                if not all(math.isfinite(metrics[key]) for key in ("train_loss", "val_loss")):
                    return diverged(metrics, self.config)
                self.history.append(metrics)
                self.report(metrics, board)
        return None

    def tensorboard(self) -> TensorBoardLog | contextlib.nullcontext[None]:
        """Rank 0's writer of the TensorBoard records (the other ranks write none)."""
        if self.rank != 0:
            return contextlib.nullcontext()
        return TensorBoardLog(self.config.tensorboard_storage(), self.epoch)

    def run_epoch(self) -> dict[str, Any]:
        """One training pass, one validation pass and the schedule step; returns the metrics."""
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        train = self.train_pass().all_reduce(self.device)
        seconds = time.perf_counter() - start
        val = self.val_pass().all_reduce(self.device)
        val_losses = val.mean_losses("val")
        self.early.step(self.scheduler, val_losses["val_loss"])
        return {
            "epoch": self.epoch,
            **train.mean_losses("train"),
            **val_losses,
            "lr": lr,
            "images_per_s": train.images / seconds,
            "skipped": train.skipped + val.skipped,
            "resumed_from": self.resumed_from,
            "early_stop": self.early.should_stop,
        }

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def batch_loss(self, model: nn.Module, batch: Batch) -> LossTerms:
        """The student's loss against the teacher. The student reads and writes its own pixel
        space; the loss compares in ImageNet-normalized space whatever the architecture, so
        losses (and the VGG19 Gram term) mean the same for STTR and MicroAST."""
        batch = batch.to(self.device)
        space = self.space
        with self.autocast():
            output = model(space.normalize(batch.content), space.normalize(batch.style))
        return self.loss_fn(space.to_imagenet(output.float()), imagenet_normalize(batch.target))

    def train_pass(self) -> Totals:
        self.model.train()
        self.train_loader.dataset.set_epoch(self.epoch)
        self.train_loader.sampler.set_epoch(self.epoch)
        totals = Totals()
        for batch in self.train_loader:
            totals.skipped += batch.skipped
            if not all_ranks_have_data(batch, self.device):
                continue
            terms = self.batch_loss(self.model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(terms.total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            totals.add(batch, terms)
        return totals

    @torch.no_grad()
    def val_pass(self) -> Totals:
        """Validation on the bare student: no DDP collectives, so ranks may differ in batches."""
        model = unwrap(self.model).eval()
        totals = Totals()
        for batch in self.val_loader:
            totals.skipped += batch.skipped
            if batch.size:
                totals.add(batch, self.batch_loss(model, batch))
        return totals

    @contextlib.contextmanager
    def staged_checkpoint(self) -> Iterator[ray.train.Checkpoint | None]:
        """Rank 0's checkpoint in the run's staging folder while the block reports it, then
        removed; None on the other ranks."""
        if self.rank != 0:
            yield None
            return
        folder = staging_folder(self.storage, self.config.name)
        shutil.rmtree(folder, ignore_errors=True)  # a killed rank 0's, never reported
        folder.mkdir(parents=True)
        try:
            save_student(unwrap(self.model), self.student_config, str(folder))
            torch.save(self.state(), folder / STATE_FILE)
            yield ray.train.Checkpoint.from_directory(str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def report(self, metrics: dict[str, Any], board: TensorBoardLog | None) -> None:
        """Checkpoint (rank 0 writes it) and metrics to Ray Train, then the metrics file and
        the TensorBoard records."""
        with self.staged_checkpoint() as checkpoint:
            ray.train.report(
                metrics, checkpoint=checkpoint, checkpoint_dir_name=self.checkpoint_name()
            )
        if self.rank == 0:
            text = "".join(json.dumps(record) + "\n" for record in self.history)
            self.storage.write_bytes(metrics_key(self.config.name), text.encode())
            assert board is not None
            board.log(metrics)
            logger.info(format_metrics(metrics, self.config.epochs))


def format_metrics(metrics: dict[str, Any], epochs: int) -> str:
    """One log line per epoch; with a Gram term, its share of the training loss."""
    gram = metrics["train_loss_gram"]
    line = (
        f"epoch {metrics['epoch']}/{epochs}  train_loss {metrics['train_loss']:.5f}"
        + (f" (gram term {gram:.2e})" if gram else "")
        + f"  val_loss {metrics['val_loss']:.5f}  lr {metrics['lr']:.2e}  "
        f"{metrics['images_per_s']:.1f} img/s  skipped {metrics['skipped']}"
    )
    return line + ("  (early stop)" if metrics["early_stop"] else "")


def diverged(metrics: dict[str, Any], config: TrainConfig) -> str:
    """Why a run whose loss became NaN or infinite stops, and what to try instead."""
    epoch = metrics["epoch"]
    kept = f"checkpoints up to epoch {epoch - 1} are kept" if epoch > 1 else "nothing was kept"
    return (
        f"training diverged in epoch {epoch} (train_loss {metrics['train_loss']}, val_loss "
        f"{metrics['val_loss']}); {kept}; try a lower --lr (now {config.lr:g})"
        + ("" if autocast_dtype(config) is None else " or --precision fp32")
    )


def train_loop_per_worker(loop_config: dict[str, Any]) -> str | None:
    """Ray Train entry point; `loop_config` holds the `TrainConfig` and the manifest `Splits`.

    Returns why training could not start when a retry cannot fix it (every rank fails alike,
    see `WorkerRun.restore_or_build`): raising would make Ray Train restart the worker group
    `max_failures` times and print each traceback. The driver turns it into one error line.
    """
    try:
        run = WorkerRun(loop_config["config"], loop_config["splits"])
    except UserError as exc:
        return str(exc)
    return run.fit()
