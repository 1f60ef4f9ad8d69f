r"""Stylize content images with one style, with a teacher (StyleID or LSAST) or a student.

    python -m jobs.stylize --content photo.jpg --style painting.jpg --out out.png [--model tiny]
    python -m jobs.stylize --teacher lsast --content photo.jpg --style-prompts styles/van-gogh \
        --out out.png --model MODEL --controlnet lllyasviel/control_v11p_sd15_canny
    python -m jobs.stylize --student RUN/train/NAME/CHECKPOINT --content ... --style ... --out ...
    python -m jobs.stylize --student CKPT --content photos/ --style painting.jpg --out styled/

The teacher works on centre-cropped squares of --resolution; the student keeps the content's
aspect ratio, its longer side scaled to --max-side, and takes a folder or glob of contents in
one call (one PNG per content under --out, named after it, with a progress bar), encoding the
style once for them all; contents that cannot be read are named in one error line at the end,
after the others are written. The student runs channels-last, and in bfloat16 where that is
faster than fp32 on this machine (STTR: within 35 dB PSNR of fp32; see the README; MicroAST
stays fp32, its bf16 output being further off); --precision fp32 forces the reference output.
"""

# torch and the models' modules are imported in the functions that use them: `--help` loads
# none of them

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Annotated, Literal

import tyro
from tqdm import tqdm

from common.cli import StorageJobArgs, choice_flag, parse, run_cli
from common.errors import UserError, first_line
from common.inputs import expand_images
from common.storage import Storage, StorageOptions, file_storage, open_fs, read_url
from student.choices import PRECISIONS
from teacher_workers.options import TeacherOptions

if TYPE_CHECKING:
    import torch

# (wanted, other) style flag, by whether the style is a learned one
STYLE_FLAGS = {True: ("--style-prompts", "--style"), False: ("--style", "--style-prompts")}


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.stylize`."""

    content: str
    """content image path or URL; with --student also a folder or glob of images"""
    style: str | None = None
    """style image path or URL"""
    style_prompts: str | None = None
    """a learned style for --teacher lsast: prompt file or jobs.learn_style output folder"""
    out: str
    """output PNG path or URL; a folder when --content names a folder or glob"""
    student: str | None = None
    """student checkpoint directory, training run folder (its best checkpoint) or
    microast-authors (the MicroAST authors' weights shipped here), instead of the teacher"""
    max_side: int = 512
    """student: scale images so their longer side is at most this (0: keep)"""
    precision: Annotated[
        Literal[PRECISIONS],  # type: ignore[valid-type]
        choice_flag("--precision", PRECISIONS),
    ] = "auto"
    """student math: auto = bf16 where faster than fp32 here (within 35 dB PSNR of it), else fp32"""
    teacher: Annotated[TeacherOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=TeacherOptions
    )

    def __post_init__(self) -> None:
        """A teacher of learned styles takes --style-prompts; the others and the student a
        style image (--style)."""
        learned = self.teacher.teacher.style_input == "learned" and not self.student
        wanted, other = STYLE_FLAGS[learned]
        given = {"--style": self.style, "--style-prompts": self.style_prompts}
        if not given[wanted]:
            with_teacher = f" with --teacher {self.teacher.kind}" if learned else ""
            raise UserError(f"{wanted} is required{with_teacher}")
        if given[other] is not None:
            raise UserError(f"{other} does not apply here; pass {wanted}")

    @property
    def style_argument(self) -> str:
        """The style flag given: an image or a learned style."""
        return self.style or self.style_prompts or ""


def read_image(url: str, options: StorageOptions, max_side: int) -> torch.Tensor:
    """[3, H, W] in [0, 1], downscaled (LANCZOS) so the longer side is at most `max_side`."""
    from common.images import load_scaled

    return load_scaled(read_url(url, options), max_side, url)


def with_teacher(args: Args) -> torch.Tensor:
    """The content stylized by the teacher; the style is read before the model loads."""
    from common.images import load_square

    options, storage = args.teacher, args.storage
    teacher = options.teacher
    content = load_square(read_url(args.content, storage), options.resolution, args.content)
    url = teacher.style_url(options, args.style_argument, storage)
    style = teacher.read_style(read_url(url, storage), url, options.resolution)
    engine = options.build()
    with tqdm(total=engine.pair_passes(1, 1, 1), desc=teacher.title, unit="UNet pass") as bar:
        return engine.stylize_pairs(content[None], [style], [(0, 0)], progress=bar.update)[0]


def with_student(args: Args, contents: list[str]) -> Iterator[torch.Tensor | UserError]:
    """Every content stylized with one model and one style, each yielded as it is done; of
    several, one that cannot be read is yielded as its error, so the others still get done."""
    from student.checkpoint import open_student
    from student.inference import encode_style, for_inference, resolve_for, stylize

    options = args.storage
    style = read_image(args.style, options, args.max_side)
    model = for_inference(open_student(args.student, options))
    if args.teacher.compile:
        model.compile(dynamic=False)  # one graph per image size (symbolic shapes compile slowly)
    precision = resolve_for(model, args.precision)
    encoded = encode_style(model, style, precision)  # once: it serves every content
    bar = tqdm(contents, desc=f"student ({precision})", unit="image", disable=len(contents) == 1)
    for url in bar:
        try:
            content = read_image(url, options, args.max_side)
        except UserError as exc:
            if len(contents) == 1:
                raise
            yield exc
            continue
        yield stylize(model, content, encoded, precision)


def output_names(contents: list[str]) -> list[str]:
    """One PNG name per content (its file name, suffix .png); a clash is a `UserError`."""
    names = [posixpath.splitext(posixpath.basename(url))[0] + ".png" for url in contents]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise UserError(f"--content: several images would be written as {', '.join(clashes)}")
    return names


def unread_message(failed: dict[str, str], total: int, out: str) -> str:
    """One line for the contents of a folder that could not be read: the first one's reason,
    and the names of up to five more."""
    first, *others = failed
    more = f"; also {', '.join(posixpath.basename(url) for url in others[:5])}" if others else ""
    return (
        f"{len(failed)} of {total} contents could not be read (the others are in {out}): "
        f"{failed[first]}{more}{' ...' if len(others) > 5 else ''}"
    )


def output_folder(
    out: str, options: StorageOptions, contents: list[str] | None
) -> tuple[Storage, list[str]]:
    """Where the images go and their names: `out` is the folder of several `contents` (one
    PNG each, named after it), or the one image's own URL."""
    if contents is not None:
        return Storage(out, options), output_names(contents)
    storage, name = file_storage(out, options)
    return storage, [name]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.stylize", __doc__)
    from common.images import png_bytes

    args = replace(args, teacher=args.teacher.chosen())
    fs, path = open_fs(args.content, args.storage)
    try:
        many = any(ch in path for ch in "*?[") or fs.isdir(path)  # a folder or glob of contents
    except Exception as exc:  # an unreachable server or store, refused credentials, ...
        raise UserError(f"cannot read --content {args.content}: {first_line(exc)}") from None
    if many and not args.student:
        raise UserError("--content: a folder or glob of contents needs --student")
    contents = expand_images([args.content], args.storage, "content") if many else [args.content]
    out, names = output_folder(args.out, args.storage, contents if many else None)
    out.check_writable()  # before any work: a wrong bucket or a read-only server is one line
    start = time.perf_counter()
    results = with_student(args, contents) if args.student else [with_teacher(args)]
    failed: dict[str, str] = {}  # content URL -> why it could not be read
    for url, name, result in zip(contents, names, results, strict=True):
        if isinstance(result, UserError):
            failed[url] = str(result)
        else:
            out.write_bytes(name, png_bytes(result))
    seconds = time.perf_counter() - start
    if failed:
        raise UserError(unread_message(failed, len(contents), args.out))
    if many:
        print(f"wrote {len(contents)} images to {args.out} ({seconds / len(contents):.2f} s each)")
    else:
        print(f"wrote {args.out} ({seconds:.1f} s)")
    return 0


cli = partial(run_cli, main)  # the console script `styleid-stylize` (pyproject.toml)

if __name__ == "__main__":
    cli()
