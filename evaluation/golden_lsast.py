"""LSAST on the golden set, beside the run's own teacher: the distillation paper chose its
teacher by showing candidate teachers on the same pairs, so `jobs.evaluate --also-teacher lsast`
runs LSAST live on the golden pairs that the run's StyleID targets already hold.

LSAST takes a learned style, not a style image: each golden style image is matched by name to
one of the learned styles given (`--style-prompts`): a golden style `.../van-gogh.png` takes
the learned style named `van-gogh`, which is a `jobs.learn_style` output folder `.../van-gogh/`
(or its `prompts.safetensors`), or a prompt file `.../van-gogh.safetensors`.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from common.errors import UserError
from common.manifest import ManifestLine
from student.dataset import Triple
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.styles import PROMPT_FILE, prompt_file_urls, read_prompts
from teacher_workers.models import resolve_device
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig

# a chunk of golden pairs and their triples -> LSAST's images of them and seconds per image
Stylizer = Callable[
    [Sequence[ManifestLine], Sequence[Triple]], tuple[list[torch.Tensor], list[float]]
]


def style_name(url: str) -> str:
    """The name a golden style image or a learned style goes by: its file's stem, or for a
    learned-style folder's `prompts.safetensors` the folder's name."""
    path = url.rstrip("/")
    if posixpath.basename(path) == PROMPT_FILE:
        path = posixpath.dirname(path)
    return posixpath.splitext(posixpath.basename(path))[0]


def lsast_options(run_teacher: Mapping[str, Any], flags: LSASTConfig) -> TeacherOptions:
    """LSAST on the run's model, dtype, DDIM steps and resolution (from its run.json teacher
    options, nested or an older flat record), with the LSAST `flags`."""
    styleid = run_teacher.get("styleid") or run_teacher
    return TeacherOptions(
        model=run_teacher.get("model", "tiny"),
        revision=run_teacher.get("revision"),
        model_config=run_teacher.get("model_config"),
        dtype=run_teacher.get("dtype", "auto"),
        styleid=StyleIDConfig(
            steps=styleid.get("steps", StyleIDConfig.steps),
            resolution=styleid.get("resolution", StyleIDConfig.resolution),
        ),
        kind="lsast",
        lsast=flags,
    ).chosen()


@dataclass(frozen=True)
class GoldenLSAST:
    """The LSAST teacher and the learned styles (name -> prompt file URL) it may take."""

    options: TeacherOptions
    learned: Mapping[str, str]
    storage_options: Mapping[str, Any]

    @classmethod
    def from_run(
        cls,
        run_teacher: Mapping[str, Any],
        style_prompts: Sequence[str],
        flags: LSASTConfig,
        storage_options: Mapping[str, Any],
    ) -> GoldenLSAST:
        """Checked before any work: the options, and every prompt file read (a missing or
        corrupt one, or two learned styles of one name, is a `UserError`)."""
        options = lsast_options(run_teacher, flags)
        if run_teacher.get("kind") == options.kind:
            raise UserError(
                f"--also-teacher {options.kind}: the run's own teacher is {options.teacher.title}"
            )
        learned: dict[str, str] = {}
        for url in prompt_file_urls(style_prompts, storage_options):
            name = style_name(url)
            if name in learned:
                raise UserError(f"--style-prompts: {learned[name]} and {url} are both {name!r}")
            learned[name] = url
        return cls(options, learned, storage_options)

    def prompt_files(self, lines: Sequence[ManifestLine]) -> dict[str, str]:
        """Golden style URL -> the prompt file of its learned style; a `UserError` names every
        golden style without one."""
        styles = dict.fromkeys(line.style for line in lines)
        missing = [s for s in styles if style_name(s) not in self.learned]
        if missing:
            raise UserError(
                f"--style-prompts has no learned style for golden style(s) "
                f"{', '.join(missing)} (a learned style named as the image's file stem; "
                f"given: {', '.join(sorted(self.learned)) or 'none'})"
            )
        return {s: self.learned[style_name(s)] for s in styles}

    def report(self, lines: Sequence[ManifestLine]) -> dict[str, Any]:
        """What metrics.json says of this teacher: its hash, settings and prompt files."""
        device = resolve_device(self.options.device)
        return {
            "teacher_hash": self.options.hash(device),
            "model": self.options.model,
            "lsast": asdict(self.options.lsast),
            "style_prompts": self.prompt_files(lines),
        }

    def stylizer(self, lines: Sequence[ManifestLine]) -> Stylizer:
        """LSAST built once for the golden pairs `lines`, as a function of a chunk of them
        (one LSAST batch) and their triples: each pair's LSAST image [3, S, S] (from the
        content as the run's teacher saw it, on that content's device) and its seconds, its
        batch's time on this machine shared out."""
        files = self.prompt_files(lines)
        generators = {url: read_prompts(url, self.storage_options) for url in set(files.values())}
        engine = self.options.build()

        def stylize(
            batch: Sequence[ManifestLine], triples: Sequence[Triple]
        ) -> tuple[list[torch.Tensor], list[float]]:
            styles = list(dict.fromkeys(files[line.style] for line in batch))
            began = time.perf_counter()
            out = engine.stylize_pairs(
                torch.stack([triple.content for triple in triples]),
                [generators[url] for url in styles],
                [(k, styles.index(files[line.style])) for k, line in enumerate(batch)],
            )
            seconds = (time.perf_counter() - began) / len(batch)
            return list(out.to(triples[0].content.device)), [seconds] * len(batch)

        return stylize
