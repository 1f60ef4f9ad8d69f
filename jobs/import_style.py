r"""Import a style the LSAST authors' code learned: their prompt file as ours, no pickle run.

    python -m jobs.import_style --authors embeddings_gs-99999.pt --out s3://styles/van-gogh \
        --styles s3://art/van-gogh/

Their `embeddings_gs-*.pt` is a pickled module; it is read with PyTorch's restricted unpickler
(a file that needs any class but a module's, a wrong key set or wrong shapes is one error line)
and written as `<out>/prompts.safetensors`, what `--style-prompts` of jobs.generate and
jobs.stylize reads, as if jobs.learn_style had made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from common.cli import StorageJobArgs, parse, run_cli
from common.inputs import expand_images
from common.storage import Storage, absolute_url, read_url


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.import_style`."""

    authors: str
    """the authors' prompt file (embeddings_gs-*.pt), a path or URL"""
    out: str
    """where the style goes (a folder or URL; it gets prompts.safetensors)"""
    styles: tuple[str, ...] = ()
    """the images the style was learned from (files, folders, globs), for jobs.train's student"""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.import_style", __doc__)
    # here, not at the top: `--help` answers without loading torch
    from teacher_workers.lsast.authors import authors_generator
    from teacher_workers.lsast.generator import generator_bytes
    from teacher_workers.lsast.styles import PROMPT_FILE

    generator = authors_generator(read_url(args.authors, args.storage), args.authors)
    styles = [absolute_url(url) for url in expand_images(args.styles, args.storage, "style")]
    storage = Storage(args.out, args.storage)
    storage.check_writable()
    storage.write_bytes(PROMPT_FILE, generator_bytes(generator, styles))
    print(f"{generator.n_prompts} prompts of width {generator.dim} -> {storage.url(PROMPT_FILE)}")
    return 0


# `styleid-import-style` (pyproject.toml [project.scripts]) and `python -m jobs.import_style`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
