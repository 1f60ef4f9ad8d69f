"""Teacher vs students on the golden set, side by side: each image against its content and
style, each student against the teacher, FID/ArtFID over the set (see
`evaluation.golden_metrics`), with timings and each student's cost; plus the contact sheet that
shows them. With `GoldenLSAST`, LSAST's images of the same pairs get a column and the same
measures of their own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from common.images import to_pil
from common.manifest import ManifestLine
from common.pictures import contact_sheet
from common.storage import Storage
from evaluation.golden_lsast import GoldenLSAST
from evaluation.golden_metrics import ImageMeter, SetMeter
from evaluation.students import GoldenStudent, measure_cost, timed_stylize
from student.dataset import Triple, load_triple
from student.inference import stylize
from teacher_workers.registry import get_teacher

SHEET_ROWS = 16  # pairs on the contact sheet: a readable picture, not one per pair of 800
THUMBNAIL = 256  # px: a contact-sheet cell is 220 px at its DPI, whatever the golden size
CHUNK = 8  # golden pairs read at once without LSAST (with it: LSAST's batch)
Figures = dict[str, float | None]


@dataclass(frozen=True)
class PairScores:
    """One golden pair's figures by side: `teacher`, `lsast` (when it runs beside the run's
    teacher) and each student's side (`GoldenStudent.side`): that image against the content
    and style (`ImageMeter.against_inputs`) and its `seconds`; each student's
    `<side>_vs_teacher`: PSNR, SSIM and LPIPS against the teacher's image."""

    content: str
    style: str
    figures: dict[str, Figures]


@dataclass(frozen=True)
class GoldenResult:
    """Everything the evaluation of a golden set found."""

    pairs: list[PairScores]
    set_scores: dict[str, Any]  # FID, ArtFID or why not
    costs: dict[str, dict[str, Any]]  # by student side: `measure_cost`
    sheet: bytes  # contact sheet PNG
    headline: list[str]  # the few lines `jobs.evaluate` ends with (`headline`)


def evaluate_pair(
    students: Sequence[GoldenStudent],
    meter: ImageMeter,
    line: ManifestLine,
    triple: Triple,
    lsast: tuple[torch.Tensor, float] | None = None,
) -> tuple[PairScores, dict[str, torch.Tensor]]:
    """Scores of one pair, and its stylized images [3, H, W] by side (teacher, LSAST when
    `lsast` gives its image and seconds, each student), in the contact sheet's column order."""
    inputs = meter.inputs(triple.content, triple.style)  # once for all the pair's images
    # teacher: per pair inside its tile, as generation recorded it (None: an earlier run)
    figures = {"teacher": {**meter.against_inputs(triple.target, inputs), "seconds": line.seconds}}
    shown = {"teacher": triple.target}
    if lsast is not None:
        shown["lsast"], seconds = lsast
        figures["lsast"] = {**meter.against_inputs(shown["lsast"], inputs), "seconds": seconds}
    for student in students:
        image, seconds = timed_stylize(student.model, triple.content, triple.style)
        figures[student.side] = {**meter.against_inputs(image, inputs), "seconds": seconds}
        figures[student.vs_teacher] = meter.against_teacher(image, triple.target)
        shown[student.side] = image
    return PairScores(line.content, line.style, figures), shown


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
    students: Sequence[GoldenStudent],
    meter: ImageMeter,
    set_meter: SetMeter,
    lsast: GoldenLSAST | None = None,
    style_images: Mapping[str, str] | None = None,
    device: torch.device | None = None,
    teacher_label: str | None = None,
) -> GoldenResult:
    """Score every golden pair, then the set as a whole, for every student; with `lsast`,
    LSAST's images too. `style_images`: the image that stands for each learned style (an LSAST
    run's); `device`: the students' and the meters' device, where the images go (default the
    CPU); `teacher_label`: the teacher column's title (none: the teacher's name).

    Streamed: the pairs are read a chunk at a time (LSAST's batch when it runs), every student
    run on each, each pair kept as its figures, the set's FID fed as it goes and the contact
    sheet's first pairs kept as thumbnails, so memory does not grow with the golden set (800
    pairs of 512 px held at once took about 7.5 GB)."""
    device = device or torch.device("cpu")
    lsast_images = lsast.stylizer(lines) if lsast else None
    chunk = lsast.options.lsast.batch_size if lsast else CHUNK
    pairs: list[PairScores] = []
    rows: list[tuple[str, list[tuple[Image.Image, str]]]] = []
    costs: dict[str, dict[str, Any]] = {}
    with tqdm(total=len(lines), desc="golden pairs", unit="pair") as bar:
        for start in range(0, len(lines), chunk):
            batch = lines[start : start + chunk]
            triples = read_chunk(storage, batch, style_images or {}, device)
            if start == 0:  # each student's cost, and a warm-up call so timings are steady
                costs = warm_up(students, triples[0])
            images, seconds = lsast_images(batch, triples) if lsast_images else ([], [])
            for k, (line, triple) in enumerate(zip(batch, triples, strict=True)):
                also = (images[k], seconds[k]) if images else None
                pair, shown = evaluate_pair(students, meter, line, triple, also)
                set_meter.update(triple.style, shown)
                pairs.append(pair)
                if len(rows) < SHEET_ROWS:
                    rows.append(sheet_row(len(pairs), line, triple, pair, shown))
                bar.update(1)
    means = summarize(pairs)
    images_of = ["teacher", *(["lsast"] if lsast else []), *(s.side for s in students)]
    set_scores = set_meter.scores({side: means[side]["lpips_content"] for side in images_of})
    title = f"golden pairs 1-{len(rows)} of {len(pairs)}" if len(rows) < len(pairs) else ""
    teacher = teacher_title(lines[0].teacher, teacher_label)
    labels = [student.label for student in students]
    columns = sheet_columns(lines[0].teacher, lsast is not None, labels, teacher_label)
    notes = column_notes(means, students, costs)
    sheet = contact_sheet(columns, rows, title, notes)
    lines_out = headline(means, teacher, len(pairs), students, costs, device.type)
    return GoldenResult(pairs, set_scores, costs, sheet, lines_out)


def warm_up(students: Sequence[GoldenStudent], triple: Triple) -> dict[str, dict[str, Any]]:
    """Each student's cost at the evaluation size (`measure_cost`, on the first golden pair)
    by side, and one untimed call of each, so that the timed ones leave out a first call's
    set-up (kernel selection, allocation) and compare between students."""
    costs = {}
    for student in students:
        costs[student.side] = measure_cost(student.model, triple.content, triple.style)
        stylize(student.model, triple.content, triple.style)
    return costs


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
        cells.append((thumbnail(image), _lpips_caption(pair.figures[side]["lpips_content"])))
    return f"pair {number}", cells


def thumbnail(image: torch.Tensor) -> Image.Image:
    """A [3, H, W] image in [0, 1] as a PIL image no larger than `THUMBNAIL` px a side."""
    picture = to_pil(image.cpu())
    picture.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    return picture


def headline(
    means: Mapping[str, Figures],
    teacher: str,
    pairs: int,
    students: Sequence[GoldenStudent],
    costs: Mapping[str, Mapping[str, Any]],
    device: str,
) -> list[str]:
    """The evaluation's figures in a few lines, means over the golden pairs: the teachers'
    images' LPIPS to their content (how much of the content they keep), then a line per
    student: against the teacher it learned from (PSNR, SSIM, LPIPS: how closely it reproduces
    it), its own LPIPS to the content, and what an image costs it on `device`."""
    kept = ", ".join(
        f"{title} {means[side]['lpips_content']:.3f}"
        for side, title in (("teacher", teacher), ("lsast", "LSAST"))
        if side in means and means[side]["lpips_content"] is not None
    )
    lines = [f"{pairs} golden pairs (means)", f"LPIPS to the content: {kept}"]
    for student in students:
        vs, own = means[student.vs_teacher], means[student.side]
        lines.append(
            f"{student.label} vs {teacher}: PSNR {vs['psnr']:.2f} dB, SSIM {vs['ssim']:.3f}, "
            f"LPIPS {vs['lpips']:.3f}; LPIPS to the content {own['lpips_content']:.3f}; "
            f"{own['seconds']:.3f} s per image on {device}, {cost_text(costs[student.side])}"
        )
    return lines


def column_notes(
    means: Mapping[str, Figures],
    students: Sequence[GoldenStudent],
    costs: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """The headline figures under the sheet's column titles, in `sheet_columns`' order: none
    for the inputs, each teacher image's mean LPIPS to the content, and each student's PSNR,
    SSIM and LPIPS against the teacher, its cost and seconds per image."""

    def kept(side: str) -> str:
        value = means[side]["lpips_content"]
        return f"mean LPIPS to content {value:.3f}" if value is not None else ""

    def student_note(student: GoldenStudent) -> str:  # two lines: more do not fit the layout
        vs = means[student.vs_teacher]
        return (
            f"PSNR {vs['psnr']:.2f} dB, SSIM {vs['ssim']:.3f}, LPIPS {vs['lpips']:.3f}\n"
            f"{cost_text(costs[student.side])}, {means[student.side]['seconds']:.3f} s"
        )

    also = [kept("lsast")] if "lsast" in means else []
    return ["", "", kept("teacher"), *also, *map(student_note, students)]


def cost_text(cost: Mapping[str, Any]) -> str:
    """A student's parameters and GFLOP per image (`measure_cost`), short."""
    return f"{cost['parameters'] / 1e6:.2f}M params, {cost['gflop']:.3g} GFLOP"


def sheet_columns(
    teacher: str, beside_lsast: bool, students: Sequence[str], label: str | None = None
) -> tuple[str, ...]:
    """The contact sheet's column titles: the run's teacher by name, or by the `label` run.json
    records (a trained student's weights), so a sheet of an LSAST run does not pass for
    StyleID's; `beside_lsast`: LSAST's column beside a StyleID run's; then a column per
    student, titled with its label."""
    also = ("LSAST",) if beside_lsast else ()
    return ("content", "style", teacher_title(teacher, label), *also, *students)


def teacher_title(teacher: str, label: str | None = None) -> str:
    """The run's teacher as the sheet and the headline name it: by the `label` run.json
    records, else by its name, saying that it is the teacher."""
    return label or f"{get_teacher(teacher).title} (teacher)"


def summarize(pairs: list[PairScores]) -> dict[str, Figures]:
    """Mean of every figure of each side over the pairs that have it (None if none has)."""
    return {side: _means([p.figures[side] for p in pairs]) for side in pairs[0].figures}


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
