"""Teacher vs student on the golden set: image metrics against the teacher, and VGG content and
style losses of both against their inputs, with timings; plus the pictures that show them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from common.image_metrics import mse, psnr, ssim
from common.images import to_pil
from common.manifest import ManifestLine
from common.pictures import contact_sheet
from common.storage import Storage
from student.dataset import Triple, load_triple
from student.inference import imagenet_normalize, stylize
from student.losses import GramLoss, load_vgg19_features


@dataclass(frozen=True)
class PairScores:
    """One golden pair. Losses: `content_*` = MSE of VGG19 relu4_1 features to the content
    image; `style_*` = Gram distance over relu1_1..relu4_1 to the style image."""

    content: str
    style: str
    mse: float
    psnr: float
    ssim: float
    teacher_content_loss: float
    student_content_loss: float
    teacher_style_loss: float
    student_style_loss: float
    student_seconds: float
    teacher_seconds: float | None  # None: the target was found from an earlier attempt


class PerceptualMeter(nn.Module):
    """Frozen VGG19 measuring content and style distance (the losses of neural style transfer)."""

    def __init__(
        self, vgg_weights: str | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        features = load_vgg19_features(vgg_weights, options)
        self.features = features.eval().requires_grad_(False)
        self.gram = GramLoss(features)

    @torch.no_grad()
    def forward(
        self, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor
    ) -> tuple[float, float]:
        """(content loss, style loss) of `image`; all [3, H, W] in [0, 1]."""
        x, c, s = (imagenet_normalize(t)[None] for t in (image, content, style))
        content_loss = F.mse_loss(self.features(x), self.features(c))
        return float(content_loss), float(self.gram(x, s))


def evaluate_pair(
    model: nn.Module, meter: PerceptualMeter, line: ManifestLine, triple: Triple
) -> tuple[PairScores, torch.Tensor]:
    """Scores of one pair, and the student's image [3, H, W]."""
    start = time.perf_counter()
    student = stylize(model, triple.content, triple.style)
    seconds = time.perf_counter() - start
    teacher_content, teacher_style = meter(triple.target, triple.content, triple.style)
    student_content, student_style = meter(student, triple.content, triple.style)
    scores = PairScores(
        content=line.content,
        style=line.style,
        mse=mse(student, triple.target),
        psnr=psnr(student, triple.target),
        ssim=ssim(student, triple.target),
        teacher_content_loss=teacher_content,
        student_content_loss=student_content,
        teacher_style_loss=teacher_style,
        student_style_loss=student_style,
        student_seconds=seconds,
        teacher_seconds=line.seconds,
    )
    return scores, student


def evaluate_golden(
    storage: Storage, lines: list[ManifestLine], model: nn.Module, meter: PerceptualMeter
) -> tuple[list[PairScores], Image.Image]:
    """Score every golden pair; returns the scores and the contact sheet."""
    triples = [load_triple(storage, line) for line in lines]
    stylize(model, triples[0].content, triples[0].style)  # warm-up, so timings are steady
    contents = sorted({line.content for line in lines})
    styles = sorted({line.style for line in lines})
    inputs_c, inputs_s, cells, scores = {}, {}, {}, []
    for line, triple in zip(lines, triples, strict=True):
        pair, student = evaluate_pair(model, meter, line, triple)
        scores.append(pair)
        row, column = contents.index(line.content), styles.index(line.style)
        inputs_c[row], inputs_s[column] = to_pil(triple.content), to_pil(triple.style)
        cells[row, column] = {"teacher": to_pil(triple.target), "student": to_pil(student)}
    sheet = contact_sheet(
        [(_name(url), inputs_c[i]) for i, url in enumerate(contents)],
        [(_name(url), inputs_s[i]) for i, url in enumerate(styles)],
        cells,
    )
    return scores, sheet


def summarize(scores: list[PairScores]) -> dict[str, float | None]:
    """Mean of every numeric field over the pairs that have it (None if none has)."""
    fields = [k for k, v in asdict(scores[0]).items() if k not in ("content", "style")]
    means: dict[str, float | None] = {}
    for name in fields:
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        means[name] = sum(values) / len(values) if values else None
    return means


def _name(url: str) -> str:
    """Short label for a picture: the last two parts of its path."""
    return "/".join(url.rstrip("/").split("/")[-2:])
