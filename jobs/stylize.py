"""Stylize one content image with one style image, with the StyleID teacher or a trained student.

python -m jobs.stylize --content photo.jpg --style painting.jpg --out out.png [--model tiny]
python -m jobs.stylize --student RUN/train/NAME/checkpoint --content ... --style ... --out ...
"""

from __future__ import annotations

import argparse
import posixpath
import time
from collections.abc import Sequence

from tqdm import tqdm

from common.cli import parse_storage_options, run_cli
from common.images import load_square, png_bytes
from common.storage import open_fs, read_url
from teacher_workers.options import add_teacher_arguments, teacher_options


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.stylize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--content", required=True, help="content image path or URL")
    parser.add_argument("--style", required=True, help="style image path or URL")
    parser.add_argument("--out", required=True, help="output PNG path or URL")
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="K=V",
        help="fsspec storage option for the URLs (repeatable)",
    )
    add_teacher_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = parse_storage_options(args.storage_option)
    teacher = teacher_options(args)
    size = teacher.styleid.resolution
    content = load_square(read_url(args.content, options), size, args.content)
    style = load_square(read_url(args.style, options), size, args.style)
    out_fs, out_path = open_fs(args.out, options)
    engine = teacher.build()
    start = time.perf_counter()
    with tqdm(total=engine.unet_passes(1, 1), desc="StyleID", unit="UNet pass") as bar:
        result = engine.stylize_tile(content[None], style[None], progress=bar.update)[0, 0]
    parent = posixpath.dirname(out_path)
    if parent:
        out_fs.makedirs(parent, exist_ok=True)
    out_fs.pipe_file(out_path, png_bytes(result))
    print(f"wrote {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    run_cli(main)
