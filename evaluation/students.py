"""The students `jobs.evaluate` sets beside the teacher (one `--student` or several, of either
architecture): each named by a short label for its contact-sheet column, its headline line and
its metrics.json entry, and costed at the evaluation size (parameters, GFLOP)."""

from __future__ import annotations

import posixpath
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from common.errors import UserError
from common.storage import Storage
from student.architectures import TITLES, arch_of
from student.checkpoint import AUTHORS_MICROAST, check_student_source, open_student
from student.flops import gflop
from student.inference import stylize

FIRST_SIDE = "student"  # the first student's key in metrics.json, as with one student
METRICS_FILE = "metrics.jsonl"  # a training run's per-epoch record (`student.train_loop`'s)


@dataclass(frozen=True)
class GoldenStudent:
    """A student under evaluation. `side`: the key of its images and figures in a pair and in
    metrics.json's means ("student", then "student_2", ...); `source`: what it was read from
    (a checkpoint URL, or `microast-authors`)."""

    label: str
    side: str
    source: str
    model: nn.Module

    @property
    def vs_teacher(self) -> str:
        """The key of its PSNR, SSIM and LPIPS against the teacher."""
        return f"{self.side}_vs_teacher"

    @property
    def arch(self) -> str:
        return arch_of(self.model.config)

    @property
    def training_metrics(self) -> str | None:
        """Its training run's metrics.jsonl (beside the checkpoint), if it has a run."""
        if self.source == AUTHORS_MICROAST:
            return None
        return posixpath.join(posixpath.dirname(self.source.rstrip("/")), METRICS_FILE)


def resolve_students(sources: Sequence[str], options: Mapping[str, Any]) -> list[str]:
    """Each `--student` as `open_student` will read it (a training run folder: its best
    checkpoint), before any work. A student given twice, also as its run folder and as that
    run's checkpoint, is one `UserError`: its column and figures would only repeat."""
    resolved: dict[str, tuple[str, str]] = {}  # by absolute URL: (as given, as resolved)
    for source in sources:
        url = check_student_source(source, options)
        where = url if url == AUTHORS_MICROAST else Storage(url, options).root
        if where in resolved:
            raise UserError(
                f"--student {source!r} names the same student as {resolved[where][0]!r} "
                f"({where}): give each student once"
            )
        resolved[where] = (source, url)
    return [url for _, url in resolved.values()]


def load_students(
    sources: Sequence[str], options: Mapping[str, Any], device: str
) -> list[GoldenStudent]:
    """The students of `resolve_students`' sources on `device`, labelled (`student_labels`)."""
    models = [open_student(source, options, device) for source in sources]
    labels = student_labels(sources, [arch_of(model.config) for model in models])
    return [
        GoldenStudent(label, FIRST_SIDE if k == 0 else f"{FIRST_SIDE}_{k + 1}", source, model)
        for k, (label, source, model) in enumerate(zip(labels, sources, models, strict=True))
    ]


def student_labels(sources: Sequence[str], archs: Sequence[str]) -> list[str]:
    """Short distinct names: the last two parts of each source's path (a run and its checkpoint,
    `l1/checkpoint_000004`), more where another source ends in the same two, and the
    architecture."""
    parts = [source.rstrip("/").split("/") for source in sources]

    def name(path: list[str]) -> str:
        others = [other for other in parts if other is not path]
        unique = (d for d in range(2, len(path)) if all(o[-d:] != path[-d:] for o in others))
        return "/".join(path[-next(unique, len(path)) :])

    return [f"{name(path)} ({TITLES[arch]})" for path, arch in zip(parts, archs, strict=True)]


def timed_stylize(model: nn.Module, content: Tensor, style: Tensor) -> tuple[Tensor, float]:
    """`stylize` and its seconds on the model's device (waiting for a GPU to finish)."""
    start = time.perf_counter()
    image = stylize(model, content, style)
    if image.is_cuda:
        torch.cuda.synchronize(image.device)
    return image, time.perf_counter() - start


def measure_cost(model: nn.Module, content: Tensor, style: Tensor) -> dict[str, Any]:
    """What one image at the evaluation size costs the student: its parameters and GFLOP
    (`student.flops`: the whole `stylize` call on a golden pair's [3, H, W] content and
    style)."""
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflop": gflop(lambda: stylize(model, content, style)),
        "gflop_at": {"content": list(content.shape[-2:]), "style": list(style.shape[-2:])},
    }
