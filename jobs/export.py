"""Export a trained student to ONNX and check it against PyTorch with ONNX Runtime.

    python -m jobs.export --student RUN/train/NAME/CHECKPOINT --onnx sttr.onnx

The graph takes content [B, 3, H, W] and style [B, 3, H', W'] in the student's pixel space
(ImageNet-normalized for STTR, RGB in [0, 1] for MicroAST; the graph's metadata says which) with
sides multiples of the student's size multiple (32 for STTR, 4 for MicroAST), and returns the
stylized content in the same space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated

from common.cli import StorageJobArgs, pair_flag, parse, run_cli
from common.errors import UserError
from common.storage import file_storage

TOLERANCE = 1e-4  # max |ONNX - PyTorch| in the student's pixel units; fp32 on the CPU: ~1e-6
Size = Annotated[tuple[int, int], pair_flag("x", "--check-sizes", "HxW")]  # (H, W)


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.export`."""

    student: str
    """student checkpoint directory, training run folder (its best checkpoint) or
    microast-authors (the MicroAST authors' weights shipped here)"""
    onnx: str
    """output .onnx path or URL"""
    example_size: int = 256
    """tracing size (x32)"""
    check_sizes: tuple[Size, ...] = ((256, 256), (192, 320))
    """HxW sizes to compare ONNX Runtime with PyTorch at"""

    def __post_init__(self) -> None:
        if any(side % 32 for size in self.check_sizes for side in size):
            raise UserError("--check-sizes: the student takes sides that are multiples of 32")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.export", __doc__)
    # here, not at the top: `--help` answers without loading torch
    from student.checkpoint import open_student
    from student.export import check_onnx, export_onnx, require_onnx

    require_onnx()
    model = open_student(args.student, args.storage)
    graph = export_onnx(model, example_size=args.example_size)
    out, name = file_storage(args.onnx, args.storage)
    out.write_bytes(name, graph)
    if args.check_sizes:
        diff = check_onnx(model, graph, args.check_sizes)
        sizes = " ".join(f"{h}x{w}" for h, w in args.check_sizes)
        print(f"ONNX Runtime vs PyTorch at {sizes}: max |diff| {diff:.2e}")
        if diff > TOLERANCE:
            raise UserError(f"exported graph differs from PyTorch by {diff:.2e} > {TOLERANCE}")
    print(f"wrote {args.onnx}")
    return 0


cli = partial(run_cli, main)  # the console script `styleid-export` (pyproject.toml)

if __name__ == "__main__":
    cli()
