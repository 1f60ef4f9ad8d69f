"""Export a trained student to ONNX and check it against PyTorch with ONNX Runtime.

    python -m jobs.export --student RUN/train/NAME/CHECKPOINT --onnx sttr.onnx

The graph takes content [B, 3, H, W] and style [B, 3, H', W'] (ImageNet-normalized, sides
multiples of 32, any size) and returns the stylized content in the same space.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

from common.cli import add_storage_option, run_cli
from common.errors import UserError
from common.storage import StorageOptions
from student.checkpoint import load_student, resolve_checkpoint
from student.export import check_onnx, export_onnx, require_onnx

TOLERANCE = 1e-4  # max |ONNX - PyTorch| in normalized units; float32 on the CPU gives ~1e-6


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--student", required=True, help="student checkpoint directory")
    parser.add_argument("--onnx", required=True, help="output .onnx path or URL")
    parser.add_argument("--example-size", type=int, default=256, help="tracing size (x32)")
    parser.add_argument(
        "--check-sizes",
        nargs="*",
        default=["256x256", "192x320"],
        help="HxW sizes to compare ONNX Runtime with PyTorch at",
    )
    add_storage_option(parser)
    return parser.parse_args(argv)


def parse_sizes(texts: Sequence[str]) -> list[tuple[int, int]]:
    sizes = []
    for text in texts:
        try:
            h, w = (int(x) for x in text.lower().split("x"))
        except ValueError:
            raise UserError(f"--check-sizes expects HxW, got {text!r}") from None
        if h % 32 or w % 32 or h < 32 or w < 32:
            raise UserError(f"--check-sizes {text}: sides must be positive multiples of 32")
        sizes.append((h, w))
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = StorageOptions(tuple(args.storage_option))
    sizes = parse_sizes(args.check_sizes)
    require_onnx()
    model, _ = load_student(resolve_checkpoint(args.student, options), options)
    export_onnx(model, args.onnx, example_size=args.example_size)
    if sizes:
        diff = check_onnx(model, args.onnx, sizes)
        print(f"ONNX Runtime vs PyTorch at {args.check_sizes}: max |diff| {diff:.2e}")
        if diff > TOLERANCE:
            raise UserError(f"exported graph differs from PyTorch by {diff:.2e} > {TOLERANCE}")
    print(f"wrote {args.onnx}")
    return 0


# `styleid-export` (pyproject.toml [project.scripts]) and `python -m jobs.export`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
