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
from PIL import Image
from torch import nn
from tqdm import tqdm

from common.images import to_pil
from common.manifest import ManifestLine
from common.pictures import contact_sheet
from common.storage import Storage
from evaluation.golden_lsast import GoldenLSAST
from evaluation.golden_metrics import ImageMeter, SetMeter
from student.dataset import Triple, load_triple
from student.inference import stylize
from teacher_workers.registry import get_teacher

SHEET_ROWS = 16  # pairs on the contact sheet: a readable picture, not one per pair of 800
THUMBNAIL = 256  # px: a contact-sheet cell is 220 px at its DPI, whatever the golden size
SIDES = ("teacher", "lsast", "student")  # the stylized images of a pair, as the sheet shows them
CHUNK = 8  # golden pairs read at once without LSAST (with it: LSAST's batch)


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
    headline: list[str]  # the few lines `jobs.evaluate` ends with (`headline`)


def evaluate_pair(
    model: nn.Module,
    meter: ImageMeter,
    line: ManifestLine,
    triple: Triple,
    lsast: tuple[torch.Tensor, float] | None = None,
) -> tuple[PairScores, dict[str, torch.Tensor]]:
    """Scores of one pair, and its stylized images [3, H, W] by side (teacher, LSAST when
    `lsast` gives its image and seconds, student), in the contact sheet's column order."""
    inputs = meter.inputs(triple.content, triple.style)  # once for all the pair's images
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
    if lsast is None:
        return scores, {"teacher": triple.target, "student": student}
    image, lsast_seconds = lsast
    scores = replace(
        scores, lsast={**meter.against_inputs(image, inputs), "seconds": lsast_seconds}
    )
    return scores, {"teacher": triple.target, "lsast": image, "student": student}


def read_chunk(
    storage: Storage,
    lines: list[ManifestLine],
    style_images: Mapping[str, str],
    device: torch.device,
) -> list[Triple]:
    """The golden triples of `lines` on `device` (see `load_triple`)."""
    triples = [load_triple(storage, line, style_images.get(line.style)) for line in lines]
    return [Triple(*(image.to(device) for image in triple)) for triple in triples]


def evaluate_golden(
    storage: Storage,
    lines: list[ManifestLine],
    model: nn.Module,
    meter: ImageMeter,
    set_meter: SetMeter,
    lsast: GoldenLSAST | None = None,
    style_images: Mapping[str, str] | None = None,
    device: torch.device | None = None,
    teacher_label: str | None = None,
) -> GoldenResult:
    """Score every golden pair, then the set as a whole; with `lsast`, LSAST's images too.
    `style_images`: the image that stands for each learned style (an LSAST run's); `device`:
    the model's and the meters' device, where the images go (default the CPU);
    `teacher_label`: the teacher column's title (none: the teacher's name).

    Streamed: the pairs are read a chunk at a time (LSAST's batch when it runs), each pair
    kept as its figures, the set's FID fed as it goes and the contact sheet's first pairs kept
    as thumbnails, so memory does not grow with the golden set (800 pairs of 512 px held at
    once took about 7.5 GB)."""
    device = device or torch.device("cpu")
    lsast_images = lsast.stylizer(lines) if lsast else None
    chunk = lsast.options.lsast.batch_size if lsast else CHUNK
    pairs: list[PairScores] = []
    rows: list[tuple[str, list[tuple[Image.Image, str]]]] = []
    with tqdm(total=len(lines), desc="golden pairs", unit="pair") as bar:
        for start in range(0, len(lines), chunk):
            batch = lines[start : start + chunk]
            triples = read_chunk(storage, batch, style_images or {}, device)
            if start == 0:  # warm-up, so timings are steady
                stylize(model, triples[0].content, triples[0].style)
            images, seconds = lsast_images(batch, triples) if lsast_images else ([], [])
            for k, (line, triple) in enumerate(zip(batch, triples, strict=True)):
                also = (images[k], seconds[k]) if images else None
                pair, shown = evaluate_pair(model, meter, line, triple, also)
                set_meter.update(triple.style, shown)
                pairs.append(pair)
                if len(rows) < SHEET_ROWS:
                    rows.append(sheet_row(len(pairs), line, triple, pair, shown))
                bar.update(1)
    means = summarize(pairs)
    set_scores = set_meter.scores(
        {side: means[side]["lpips_content"] for side in SIDES if side in means}
    )
    title = f"golden pairs 1-{len(rows)} of {len(pairs)}" if len(rows) < len(pairs) else ""
    teacher = get_teacher(lines[0].teacher).title
    columns = sheet_columns(lines[0].teacher, beside_lsast=lsast is not None, label=teacher_label)
    sheet = contact_sheet(columns, rows, title, column_notes(means, teacher))
    return GoldenResult(pairs, set_scores, sheet, headline(means, teacher, len(pairs)))


def sheet_row(
    number: int,
    line: ManifestLine,
    triple: Triple,
    pair: PairScores,
    shown: Mapping[str, torch.Tensor],
) -> tuple[str, list[tuple[Image.Image, str]]]:
    """One contact-sheet row: content, style and each stylized image of `shown` (by side) as
    a thumbnail of at most `THUMBNAIL` px, captioned with its LPIPS to the content."""
    cells = [(thumbnail(triple.content), _name(line.content))]
    cells.append((thumbnail(triple.style), _name(line.style)))
    for side, image in shown.items():
        cells.append((thumbnail(image), _lpips_caption(getattr(pair, side)["lpips_content"])))
    return f"pair {number}", cells


def thumbnail(image: torch.Tensor) -> Image.Image:
    """A [3, H, W] image in [0, 1] as a PIL image no larger than `THUMBNAIL` px a side."""
    picture = to_pil(image.cpu())
    picture.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    return picture


def headline(
    means: Mapping[str, Mapping[str, float | None]], teacher: str, pairs: int
) -> list[str]:
    """The evaluation's figures in a few lines: the student against the teacher it learned
    from (PSNR, SSIM, LPIPS: how closely it reproduces it) and each image's LPIPS to its
    content (how much of the content it keeps), means over the golden pairs."""
    vs = means["student_vs_teacher"]
    kept = ", ".join(
        f"{title} {means[side]['lpips_content']:.3f}"
        for side, title in (("teacher", teacher), ("lsast", "LSAST"), ("student", "student"))
        if side in means and means[side]["lpips_content"] is not None
    )
    return [
        f"{pairs} golden pairs (means)",
        f"student vs {teacher} (teacher): PSNR {vs['psnr']:.2f} dB, SSIM {vs['ssim']:.3f}, "
        f"LPIPS {vs['lpips']:.3f}",
        f"LPIPS to the content: {kept}",
    ]


def column_notes(means: Mapping[str, Mapping[str, float | None]], teacher: str) -> list[str]:
    """The headline figures under the sheet's column titles, in `sheet_columns`' order: none
    for the inputs, each image's mean LPIPS to the content, and the student's figures
    against the teacher."""

    def kept(side: str) -> str:
        value = means[side]["lpips_content"]
        return f"mean LPIPS to content {value:.3f}" if value is not None else ""

    vs = means["student_vs_teacher"]
    student = (
        f"vs {teacher}: PSNR {vs['psnr']:.2f} dB\nSSIM {vs['ssim']:.3f}, LPIPS {vs['lpips']:.3f}"
    )
    also = [kept("lsast")] if "lsast" in means else []
    return ["", "", kept("teacher"), *also, student]


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
