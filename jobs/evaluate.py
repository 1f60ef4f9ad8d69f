"""Compare teacher and student on the golden set: metrics.json, contact_sheet.png, curves.png.

    python -m jobs.evaluate --data runs/demo --student runs/demo/train/demo/checkpoint_000004
    ray job submit --address http://HEAD:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.evaluate --data s3://bucket/run --student s3://bucket/run/train/l1

Writes <data>/eval/<name>/. Golden pairs are the manifest lines with split "golden", which no
training or validation ever reads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

from common.cli import add_storage_option, run_cli
from common.run_info import read_run_info
from common.storage import Storage, StorageOptions
from student.reporting import write_evaluation
from teacher_workers.sizing import teacher_parameters


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="run root with manifests/ and targets/")
    parser.add_argument("--student", required=True, help="student checkpoint directory")
    parser.add_argument("--name", default="golden", help="output folder <data>/eval/<name>/")
    parser.add_argument("--teacher-hash", default=None, help="which teacher, if several")
    parser.add_argument(
        "--metrics",
        default=None,
        help="training metrics.jsonl for curves.png (default: beside the checkpoint)",
    )
    parser.add_argument(
        "--vgg-weights",
        default=None,
        help="torchvision VGG19 weights (path or URL) for the content and style losses, or "
        "'random' (default: the torch hub cache, else a download unless HF_HUB_OFFLINE is set)",
    )
    add_storage_option(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = StorageOptions(tuple(args.storage_option))
    storage = Storage(args.data, options)
    run = (read_run_info(storage) or {}).get("config", {})
    model = run.get("model", "tiny")
    where = write_evaluation(
        storage,
        args.student,
        args.name,
        args.teacher_hash,
        args.metrics,
        args.vgg_weights,
        options,
        teacher_model=model,
        teacher_parameters=teacher_parameters(model, run.get("revision")),
    )
    print(f"metrics, contact sheet and curves: {where}")
    return 0


# `styleid-evaluate` (pyproject.toml [project.scripts]) and `python -m jobs.evaluate`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
