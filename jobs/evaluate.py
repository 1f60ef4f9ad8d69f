"""Compare teacher and student on the golden set: metrics.json, contact_sheet.png, curves.png.

    python -m jobs.evaluate --data runs/demo --student runs/demo/train/demo/checkpoint_000004
    ray job submit --address http://HEAD:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.evaluate --data s3://bucket/run --student s3://bucket/run/train/l1

Writes <data>/eval/<name>/. Golden pairs are the manifest lines with split "golden", which no
training or validation ever reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated

import tyro

from common.cli import parse, run_cli
from common.run_info import read_run_info
from common.storage import Storage, StorageOptions
from student.reporting import write_evaluation
from teacher_workers.sizing import teacher_parameters


@dataclass(frozen=True, kw_only=True)
class Args:
    """The flags of `python -m jobs.evaluate`."""

    data: str
    """run root with manifests/ and targets/"""
    student: str
    """student checkpoint directory (or training run folder: its best checkpoint)"""
    name: str = "golden"
    """output folder <data>/eval/<name>/"""
    teacher_hash: str | None = None
    """which teacher, if several"""
    metrics: str | None = None
    """training metrics.jsonl for curves.png (none: the one beside the checkpoint)"""
    vgg_weights: str | None = None
    """VGG19 weights (path or URL) for the content and style losses, or 'random'"""
    storage: Annotated[StorageOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StorageOptions
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.evaluate", __doc__)
    storage = Storage(args.data, args.storage)
    teacher = (read_run_info(storage) or {}).get("config", {}).get("teacher", {})
    model = teacher.get("model", "tiny")
    where = write_evaluation(
        storage,
        args.student,
        args.name,
        args.teacher_hash,
        args.metrics,
        args.vgg_weights,
        args.storage,
        teacher_model=model,
        teacher_parameters=teacher_parameters(model, teacher.get("revision")),
    )
    print(f"metrics, contact sheet and curves: {where}")
    return 0


# `styleid-evaluate` (pyproject.toml [project.scripts]) and `python -m jobs.evaluate`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
