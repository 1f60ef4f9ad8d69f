"""Writing an evaluation: golden-set scores, parameter counts and pictures under <root>/eval/."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from common.errors import UserError
from common.manifest import ManifestLine, read_manifest
from common.pictures import training_curves
from common.storage import Storage, read_url
from evaluation.golden_lsast import GoldenLSAST
from evaluation.golden_metrics import ImageMeter, SetMeter
from evaluation.golden_set import evaluate_golden, summarize
from evaluation.students import GoldenStudent, load_students
from student.pretrained import RANDOM
from teacher_workers.lsast.styles import learned_from
from teacher_workers.registry import learned_styles

LSAST_NOTES = {
    "lsast": "LSAST beside the run's teacher (--also-teacher lsast): the same measures of its "
    "image of each golden pair, in the learned style named as the golden style image "
    "(also_teacher.lsast.style_prompts)",
    "lsast.seconds": "per pair: its batch's time on this machine, shared out",
}
NOTES = {
    "lpips_content": "LPIPS (AlexNet) of the image to its content; lower keeps more",
    "cfsd": "StyleID's content feature structural distance to the content (VGG19 "
    "relu3_1 self-similarity KL, summed over positions: compare at equal resolution)",
    "content_loss": "MSE of VGG19 relu4_1 features to the content",
    "style_loss": "Gram distance over VGG19 relu1_1..relu4_1 to the style",
    "student_vs_teacher": "PSNR (dB), SSIM and LPIPS of the student to the teacher",
    "teacher.seconds": "per pair inside its tile, as recorded by generation",
    "student.seconds": "one forward pass on `device`, after an untimed warm-up call",
    "students": "one entry per --student, in column order: `side` is its key in `mean`, "
    "`pairs` and `set` (student, student_2, ...; <side>_vs_teacher against the teacher); "
    "`gflop`: PyTorch's FLOP counter over one stylize call at `gflop_at` (the first golden "
    "pair's content and style); the top-level student* keys are the first student's",
    "curves": "the training run curves.png draws: --metrics, else the first student's "
    "that has a metrics.jsonl",
}
LEARNED_STYLE_NOTES = {
    "style_images": "an LSAST run's golden style is a learned style: the first image it was "
    "learned from stands for it (the student's style input, the style measures, the sheet)",
}


def read_training_metrics(url: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-epoch records of a training run; none (and a flat chart) if the file is absent."""
    try:
        text = read_url(url, options).decode()
    except UserError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def curves(records: list[dict[str, Any]], student: str | None = None) -> bytes:
    """curves.png: train/val loss, the train loss's pixel and Gram terms where it has a Gram
    term (l2/l3; l1's is zero, and older runs did not record terms) and the learning rate, over
    epochs; titled with the label of the `student` they are of, when known."""
    gram = [r.get("train_loss_gram", 0.0) for r in records]
    mse = [r.get("train_loss_mse") for r in records]
    terms = {"train pixel MSE term": mse, "train Gram term": gram} if any(gram) else {}
    return training_curves(
        [r["epoch"] for r in records],
        {
            "train loss": [r["train_loss"] for r in records],
            "val loss": [r["val_loss"] for r in records],
        },
        [r["lr"] for r in records],
        terms,
        f"training curves: {student}" if student else "training curves",
    )


def weights_report(sources: dict[str, str]) -> dict[str, Any]:
    """Where each measuring network's weights came from, and a warning when any was random:
    such figures still look like numbers but compare with nothing."""
    random = [name for name, source in sources.items() if source == RANDOM]
    return {
        "weights": sources,
        "paper_comparable": not random,
        "weights_note": (
            f"random {', '.join(random)} weights: the figures that use them (LPIPS, CFSD, "
            "content/style losses, FID) only test the plumbing"
            if random
            else "pretrained weights throughout"
        ),
    }


def learned_style_images(lines: list[ManifestLine], options: dict[str, Any]) -> dict[str, str]:
    """For the pairs of an LSAST run, whose style is a learned style (a prompt file), the image
    that stands for it in the student's input, the measures and the contact sheet: the first it
    was learned from. A prompt file that records none is a `UserError`, before any work."""
    return {url: learned_from(url, options)[0] for url in learned_styles(lines)}


@dataclass(frozen=True)
class Written:
    """What `write_evaluation` leaves: where, and its headline figures (`headline`)."""

    url: str  # the output folder
    headline: list[str]


def write_evaluation(
    storage: Storage,
    students: Sequence[str],
    name: str,
    teacher_hash: str | None,
    metrics_url: str | None,
    weights: dict[str, str | None],
    options: dict[str, Any],
    lsast: GoldenLSAST | None = None,
    device: str = "cpu",
    teacher_labels: Mapping[str, str] | None = None,
    **extra: Any,
) -> Written:
    """Evaluate the students (`resolve_students`' sources, in column order) on the run's golden
    pairs on `device` (the students and the measuring networks; LSAST runs on its options'
    device). `weights`: the choice (path/URL, "random" or None) for "vgg", "lpips" and
    "inception"; `metrics_url`: the training metrics.jsonl curves.png draws (none: the first
    student's run that has one); `lsast`: LSAST to run beside the run's teacher;
    `teacher_labels`: the contact sheet's teacher column by teacher hash, as run.json records
    it. `extra` fields (e.g. the teacher's parameter count) go into metrics.json as they
    are."""
    lines = read_manifest(storage, teacher_hash, splits=("golden",))
    if not lines:
        raise UserError(
            f"{storage.url('manifests')}: no golden pairs; generate with "
            "--golden-content and --golden-styles"
        )
    if lsast:  # every golden style has its learned style, before any work
        extra["also_teacher"] = {"lsast": lsast.report(lines)}
    style_images = learned_style_images(lines, options)
    if style_images:
        extra["style_images"] = style_images
    # the measuring networks before the students: missing weights fail fast
    meter = ImageMeter(weights.get("vgg"), weights.get("lpips"), options).to(device)
    set_meter = SetMeter(len(lines), weights.get("inception"), options)
    golden = load_students(students, options, device)
    label = (teacher_labels or {}).get(lines[0].teacher_hash)
    result = evaluate_golden(
        storage, lines, golden, meter, set_meter, lsast, style_images, torch.device(device), label
    )
    means = summarize(result.pairs)
    curves_of, records = training_records(golden, metrics_url, options)
    first = golden[0]
    report = {
        "teacher_hash": lines[0].teacher_hash,
        # the first student's, as in an evaluation of one; `students` has every student's
        "student": first.source,
        "student_arch": first.arch,
        "student_config": asdict(first.model.config),
        "student_parameters": result.costs[first.side]["parameters"],
        "students": [student_entry(s, means, result.costs[s.side]) for s in golden],
        "device": device,
        **extra,
        **weights_report({**meter.sources, "Inception (FID)": set_meter.source}),
        "mean": means,
        "set": result.set_scores,
        "pairs": [{"content": s.content, "style": s.style, **s.figures} for s in result.pairs],
        "curves": curves_of,
        "notes": {
            **NOTES,
            **(LSAST_NOTES if lsast else {}),
            **(LEARNED_STYLE_NOTES if style_images else {}),
        },
    }
    folder = f"eval/{name}"
    storage.write_bytes(f"{folder}/metrics.json", json.dumps(report, indent=2).encode())
    storage.write_bytes(f"{folder}/contact_sheet.png", result.sheet)
    storage.write_bytes(f"{folder}/curves.png", curves(records, curves_of["student"]))
    return Written(storage.url(folder), result.headline)


def student_entry(
    student: GoldenStudent, means: Mapping[str, Mapping[str, Any]], cost: Mapping[str, Any]
) -> dict[str, Any]:
    """A student's own entry in metrics.json: where it came from, what it is, what an image at
    the evaluation size costs it, and its headline figures (means over the golden pairs; its
    every figure is under `mean` and each pair by its `side`)."""
    return {
        "label": student.label,
        "side": student.side,
        "source": student.source,
        "arch": student.arch,
        "config": asdict(student.model.config),
        **cost,
        "seconds_per_image": means[student.side]["seconds"],
        "vs_teacher": means[student.vs_teacher],
        "lpips_content": means[student.side]["lpips_content"],
    }


def training_records(
    students: Sequence[GoldenStudent], metrics_url: str | None, options: dict[str, Any]
) -> tuple[dict[str, str | None], list[dict[str, Any]]]:
    """What curves.png draws: `metrics_url` if given, else the training metrics of the first
    student (in `--student` order) whose run has any (the MicroAST authors' weights have
    none); with where they came from ({"student": label or None, "metrics": URL or None})."""
    if metrics_url:
        records = read_training_metrics(metrics_url, options)
        return {"student": None, "metrics": metrics_url}, records
    for student in students:
        url = student.training_metrics
        records = read_training_metrics(url, options) if url else []
        if records:
            return {"student": student.label, "metrics": url}, records
    return {"student": None, "metrics": None}, []
