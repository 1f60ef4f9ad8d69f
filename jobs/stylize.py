"""Stylize one content image with one style image, with the StyleID teacher or a trained student.

    python -m jobs.stylize --content photo.jpg --style painting.jpg --out out.png [--model tiny]
    python -m jobs.stylize --student RUN/train/NAME/CHECKPOINT --content ... --style ... --out ...

The teacher works on centre-cropped squares of --resolution; the student keeps the content's
aspect ratio, its longer side scaled to --max-side.
"""

from __future__ import annotations

import argparse
import posixpath
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from common.cli import add_storage_option, run_cli
from common.images import decode_image, load_square, png_bytes, to_tensor
from common.storage import StorageOptions, open_fs, read_url
from student.checkpoint import load_student, resolve_checkpoint
from student.inference import stylize
from teacher_workers.options import TeacherOptions, add_teacher_arguments, teacher_options


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.stylize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--content", required=True, help="content image path or URL")
    parser.add_argument("--style", required=True, help="style image path or URL")
    parser.add_argument("--out", required=True, help="output PNG path or URL")
    add_storage_option(parser)
    student = parser.add_argument_group("student (instead of the teacher)")
    student.add_argument("--student", default=None, help="student checkpoint directory")
    student.add_argument(
        "--max-side",
        type=int,
        default=512,
        help="scale images so their longer side is at most this (0: keep)",
    )
    add_teacher_arguments(parser)
    return parser.parse_args(argv)


def read_image(url: str, options: dict[str, Any], max_side: int) -> torch.Tensor:
    """[3, H, W] in [0, 1], downscaled (LANCZOS) so the longer side is at most `max_side`."""
    image = decode_image(read_url(url, options), url)
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), resample=Image.Resampling.LANCZOS)
    return to_tensor(image)


def with_teacher(
    args: argparse.Namespace, teacher: TeacherOptions, options: dict[str, Any]
) -> torch.Tensor:
    size = teacher.styleid.resolution
    content = load_square(read_url(args.content, options), size, args.content)
    style = load_square(read_url(args.style, options), size, args.style)
    engine = teacher.build()
    with tqdm(total=engine.unet_passes(1, 1), desc="StyleID", unit="UNet pass") as bar:
        return engine.stylize_tile(content[None], style[None], progress=bar.update)[0, 0]


def with_student(args: argparse.Namespace, options: dict[str, Any]) -> torch.Tensor:
    content = read_image(args.content, options, args.max_side)
    style = read_image(args.style, options, args.max_side)
    model, _ = load_student(resolve_checkpoint(args.student, options), options)
    return stylize(model, content, style)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = StorageOptions(tuple(args.storage_option))
    teacher = teacher_options(args)
    out_fs, out_path = open_fs(args.out, options)
    start = time.perf_counter()
    result = with_student(args, options) if args.student else with_teacher(args, teacher, options)
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
