"""Writing an evaluation: golden-set scores, parameter counts and pictures under <root>/eval/."""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict
from typing import Any

from PIL import Image

from common.errors import UserError
from common.images import encode_png
from common.manifest import read_manifest
from common.pictures import line_chart, stack_vertically
from common.storage import Storage, read_url
from student.checkpoint import load_student, resolve_checkpoint
from student.evaluation import PerceptualMeter, evaluate_golden, summarize


def read_training_metrics(url: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-epoch records of a training run; none (and a flat chart) if the file is absent."""
    try:
        text = read_url(url, options).decode()
    except UserError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def curves(records: list[dict[str, Any]]) -> Image.Image:
    """Train/val loss and learning rate over epochs."""
    loss = {
        name: [(r["epoch"], r[key]) for r in records]
        for name, key in (("train loss", "train_loss"), ("val loss", "val_loss"))
    }
    lr = {"learning rate": [(r["epoch"], r["lr"]) for r in records]}
    return stack_vertically(
        [
            line_chart(loss, "loss per epoch", "epoch"),
            line_chart(lr, "learning rate", "epoch", log_y=True),
        ]
    )


def write_evaluation(
    storage: Storage,
    student_url: str,
    name: str,
    teacher_hash: str | None,
    metrics_url: str | None,
    vgg_weights: str | None,
    options: dict[str, Any],
    **extra: Any,
) -> str:
    """Evaluate the student on the run's golden pairs; returns the URL of the output folder.
    `extra` fields (e.g. the teacher's parameter count) go into metrics.json as they are."""
    lines = read_manifest(storage, teacher_hash, splits=("golden",))
    if not lines:
        raise UserError(
            f"{storage.url('manifests')}: no golden pairs; generate with "
            "--golden-content and --golden-styles"
        )
    student_url = resolve_checkpoint(student_url, options)
    meter = PerceptualMeter(vgg_weights, options)  # before the model: a missing VGG19 fails fast
    model, config = load_student(student_url, options)
    scores, sheet = evaluate_golden(storage, lines, model, meter)
    metrics_url = metrics_url or posixpath.join(
        posixpath.dirname(student_url.rstrip("/")), "metrics.jsonl"
    )
    report = {
        "teacher_hash": lines[0].teacher_hash,
        "student": student_url,
        "student_config": asdict(config),
        "student_parameters": sum(p.numel() for p in model.parameters()),
        **extra,
        "pairs": [asdict(s) for s in scores],
        "mean": summarize(scores),
        "notes": {
            "teacher_seconds": "per pair inside its tile, as recorded by generation",
            "student_seconds": "one forward pass on this machine's CPU/GPU",
        },
    }
    folder = f"eval/{name}"
    storage.write_bytes(f"{folder}/metrics.json", json.dumps(report, indent=2).encode())
    storage.write_bytes(f"{folder}/contact_sheet.png", encode_png(sheet))
    storage.write_bytes(
        f"{folder}/curves.png", encode_png(curves(read_training_metrics(metrics_url, options)))
    )
    return storage.url(folder)
