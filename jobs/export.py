"""Export a trained student to ONNX and check it against PyTorch with ONNX Runtime.

    python -m jobs.export --student RUN/train/NAME/CHECKPOINT --onnx sttr.onnx

The graph takes content [B, 3, H, W] and style [B, 3, H', W'] (ImageNet-normalized, sides
multiples of 32, any size) and returns the stylized content in the same space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from common.cli import StorageJobArgs, parse, run_cli
from common.errors import UserError
from student.checkpoint import load_student, resolve_checkpoint
from student.export import check_onnx, export_onnx, require_onnx

TOLERANCE = 1e-4  # max |ONNX - PyTorch| in normalized units; float32 on the CPU gives ~1e-6


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.export`."""

    student: str
    """student checkpoint directory (or training run folder: its best checkpoint)"""
    onnx: str
    """output .onnx path or URL"""
    example_size: int = 256
    """tracing size (x32)"""
    check_sizes: tuple[str, ...] = ("256x256", "192x320")
    """HxW sizes to compare ONNX Runtime with PyTorch at"""


def parse_sizes(texts: Sequence[str]) -> list[tuple[int, int]]:
    """(H, W) of each of --check-sizes; the student takes sides that are multiples of 32."""
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
    args = parse(Args, argv, "jobs.export", __doc__)
    sizes = parse_sizes(args.check_sizes)
    require_onnx()
    model, _ = load_student(resolve_checkpoint(args.student, args.storage), args.storage)
    export_onnx(model, args.onnx, example_size=args.example_size)
    if sizes:
        diff = check_onnx(model, args.onnx, sizes)
        print(f"ONNX Runtime vs PyTorch at {args.check_sizes}: max |diff| {diff:.2e}")
        if diff > TOLERANCE:
            raise UserError(f"exported graph differs from PyTorch by {diff:.2e} > {TOLERANCE}")
    print(f"wrote {args.onnx}")
    return 0


cli = partial(run_cli, main)  # the console script `styleid-export` (pyproject.toml)

if __name__ == "__main__":
    cli()
