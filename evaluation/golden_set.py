"""Teacher vs student on the golden set, side by side: each image against its content and style,
the student against the teacher, FID/ArtFID over the set (see `evaluation.golden_metrics`), with
timings; plus the contact sheet that shows them. With `GoldenLSAST`, LSAST's images of the same
pairs get a column and the same measures of their own."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from common.images import to_pil
from common.manifest import ManifestLine
from common.pictures import contact_sheet
from common.storage import Storage
from evaluation.golden_lsast import GoldenLSAST
from evaluation.golden_metrics import ImageMeter, PairInputs, SetMeter
from student.dataset import Triple, load_triple
from student.inference import stylize
from teacher_workers.registry import get_teacher

SHEET_ROWS = 16  # pairs on the contact sheet: a readable picture, not one per pair of 800


@dataclass(frozen=True)
class PairScores:
    """One golden pair. `teacher`, `student`: that image against the content and style
    (`ImageMeter.against_inputs`) and its `seconds`; `student_vs_teacher`: PSNR, SSIM, LPIPS;
    `lsast`: as `teacher`, for LSAST's image when it runs beside the run's teacher."""

    content: str
    style: str
    teacher: dict[str, float | None]
    student: dict[str, float | None]
    student_vs_teacher: dict[str, float]
    lsast: dict[str, float | None] | None = None


@dataclass(frozen=True)
class GoldenResult:
    """Everything the evaluation of a golden set found."""

    pairs: list[PairScores]
    set_scores: dict[str, Any]  # FID, ArtFID or why not
    sheet: bytes  # contact sheet PNG


def evaluate_pair(
    model: nn.Module, meter: ImageMeter, line: ManifestLine, triple: Triple, inputs: PairInputs
) -> tuple[PairScores, torch.Tensor]:
    """Scores of one pair, and the student's image [3, H, W]; `inputs`: the meter's view of
    the triple's content and style."""
    start = time.perf_counter()
    student = stylize(model, triple.content, triple.style)
    seconds = time.perf_counter() - start
    scores = PairScores(
        content=line.content,
        style=line.style,
        # teacher: per pair inside its tile, as generation recorded it (None: an earlier run)
        teacher={
            **meter.against_inputs(triple.target, inputs),
            "seconds": line.seconds,
        },
        student={**meter.against_inputs(student, inputs), "seconds": seconds},
        student_vs_teacher=meter.against_teacher(student, triple.target),
    )
    return scores, student


def evaluate_golden(
    storage: Storage,
    lines: list[ManifestLine],
    model: nn.Module,
    meter: ImageMeter,
    set_meter: SetMeter,
    lsast: GoldenLSAST | None = None,
    style_images: Mapping[str, str] | None = None,
    teacher_label: str | None = None,
) -> GoldenResult:
    """Score every golden pair, then the set as a whole; with `lsast`, LSAST's images too.
    `style_images`: the image that stands for each learned style (an LSAST run's);
    `teacher_label`: the teacher column's title (none: the teacher's name)."""
    style_images = style_images or {}
    triples = [load_triple(storage, line, style_images.get(line.style)) for line in lines]
    lsast_images, lsast_seconds = lsast.stylize(lines, triples) if lsast else ([], [])
    stylize(model, triples[0].content, triples[0].style)  # warm-up, so timings are steady
    pairs, students, rows = [], [], []
    for number, (line, triple) in enumerate(zip(lines, triples, strict=True), start=1):
        inputs = meter.inputs(triple.content, triple.style)  # once for all the pair's images
        pair, student = evaluate_pair(model, meter, line, triple, inputs)
        shown = [(triple.target, pair.teacher), (student, pair.student)]
        if lsast:
            image = lsast_images[number - 1]
            scores = meter.against_inputs(image, inputs)
            pair = replace(pair, lsast={**scores, "seconds": lsast_seconds[number - 1]})
            shown.insert(1, (image, pair.lsast))
        pairs.append(pair)
        students.append(student)
        if number <= SHEET_ROWS:
            cells = [(to_pil(triple.content), _name(line.content))]
            cells.append((to_pil(triple.style), _name(line.style)))
            cells += [(to_pil(image), _lpips_caption(s["lpips_content"])) for image, s in shown]
            rows.append((f"pair {number}", cells))
    means = summarize(pairs)
    stylized = {"teacher": [t.target for t in triples], "student": students}
    if lsast:
        stylized["lsast"] = lsast_images
    set_scores = set_meter.scores(
        [t.style for t in triples],
        stylized,
        {side: means[side]["lpips_content"] for side in stylized},
    )
    title = f"golden pairs 1-{len(rows)} of {len(pairs)}" if len(rows) < len(pairs) else ""
    columns = sheet_columns(lines[0].teacher, beside_lsast=lsast is not None, label=teacher_label)
    return GoldenResult(pairs, set_scores, contact_sheet(columns, rows, title))


def sheet_columns(teacher: str, beside_lsast: bool, label: str | None = None) -> tuple[str, ...]:
    """The contact sheet's column titles: the run's teacher by name, or by the `label` run.json
    records (a trained student's weights), so a sheet of an LSAST run does not pass for
    StyleID's; `beside_lsast`: LSAST's column beside a StyleID run's."""
    also = ("LSAST",) if beside_lsast else ()
    title = label or f"{get_teacher(teacher).title} (teacher)"
    return ("content", "style", title, *also, "student")


def summarize(pairs: list[PairScores]) -> dict[str, dict[str, float | None]]:
    """Mean of every figure of each side over the pairs that have it (None if none has)."""
    groups = {
        "teacher": [p.teacher for p in pairs],
        "student": [p.student for p in pairs],
        "student_vs_teacher": [p.student_vs_teacher for p in pairs],
    }
    if pairs[0].lsast is not None:
        groups["lsast"] = [p.lsast for p in pairs]
    return {group: _means(records) for group, records in groups.items()}


def _means(records: list[dict[str, Any]]) -> dict[str, float | None]:
    means: dict[str, float | None] = {}
    for name in records[0]:
        values = [r[name] for r in records if r[name] is not None]
        means[name] = sum(values) / len(values) if values else None
    return means


def _lpips_caption(value: float | None) -> str:
    return f"LPIPS to content {value:.3f}" if value is not None else ""


def _name(url: str) -> str:
    """Short label for a picture: the last two parts of its path."""
    return "/".join(url.rstrip("/").split("/")[-2:])
