"""Stylize one content image with one style image, with the StyleID teacher or a trained student.

    python -m jobs.stylize --content photo.jpg --style painting.jpg --out out.png [--model tiny]
    python -m jobs.stylize --student RUN/train/NAME/CHECKPOINT --content ... --style ... --out ...

The teacher works on centre-cropped squares of --resolution; the student keeps the content's
aspect ratio, its longer side scaled to --max-side.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated

import torch
import tyro
from PIL import Image
from tqdm import tqdm

from common.cli import parse, run_cli
from common.images import decode_image, load_square, png_bytes, to_tensor
from common.storage import StorageOptions, open_fs, read_url
from student.checkpoint import load_student, resolve_checkpoint
from student.inference import stylize
from teacher_workers.options import TeacherOptions


@dataclass(frozen=True, kw_only=True)
class Args:
    """The flags of `python -m jobs.stylize`."""

    content: str
    """content image path or URL"""
    style: str
    """style image path or URL"""
    out: str
    """output PNG path or URL"""
    storage: Annotated[StorageOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StorageOptions
    )
    student: str | None = None
    """student checkpoint directory (or training run folder), instead of the teacher"""
    max_side: int = 512
    """student: scale images so their longer side is at most this (0: keep)"""
    teacher: Annotated[TeacherOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=TeacherOptions
    )


def read_image(url: str, options: StorageOptions, max_side: int) -> torch.Tensor:
    """[3, H, W] in [0, 1], downscaled (LANCZOS) so the longer side is at most `max_side`."""
    image = decode_image(read_url(url, options), url)
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), resample=Image.Resampling.LANCZOS)
    return to_tensor(image)


def with_teacher(args: Args) -> torch.Tensor:
    size = args.teacher.styleid.resolution
    content = load_square(read_url(args.content, args.storage), size, args.content)
    style = load_square(read_url(args.style, args.storage), size, args.style)
    engine = args.teacher.build()
    with tqdm(total=engine.unet_passes(1, 1), desc="StyleID", unit="UNet pass") as bar:
        return engine.stylize_tile(content[None], style[None], progress=bar.update)[0, 0]


def with_student(args: Args, student: str) -> torch.Tensor:
    content = read_image(args.content, args.storage, args.max_side)
    style = read_image(args.style, args.storage, args.max_side)
    model, _ = load_student(resolve_checkpoint(student, args.storage), args.storage)
    return stylize(model, content, style)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.stylize", __doc__)
    out_fs, out_path = open_fs(args.out, args.storage)
    start = time.perf_counter()
    result = with_student(args, args.student) if args.student else with_teacher(args)
    parent = posixpath.dirname(out_path)
    if parent:
        out_fs.makedirs(parent, exist_ok=True)
    out_fs.pipe_file(out_path, png_bytes(result))
    print(f"wrote {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


# `styleid-stylize` (pyproject.toml [project.scripts]) and `python -m jobs.stylize`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
