"""The distillation paper's objectives: MSE to the teacher's image, optionally plus a Gram term.

    l1 = MSE(student, teacher)              (the paper's best)
    l2 = 0.5 * MSE + 0.5 * G
    l3 = 0.7 * MSE + 0.3 * G
    G  = sum over VGG19 features[0:2], [2:7], [7:12], [12:21] of
         MSE(Gram(student features), Gram(teacher features)), one Gram matrix per sample.

Both images are in ImageNet-normalized space, which is also what VGG19 expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import UserError
from student.choices import LOSS_WEIGHTS
from student.pretrained import VGG19, load_instrument

VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21))  # relu1_1, relu2_1, relu3_1, relu4_1
# their places among the slices' outputs (`relus`); relu3_1 (features[0:12]) is the layer of
# StyleID's CFSD, which its code calls "11"
RELU3_1, RELU4_1 = 2, 3
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512)  # = features[0:21]


def vgg19_features() -> nn.Sequential:
    """torchvision's `vgg19().features[0:21]` (same indices, so its weights load directly)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
            channels = int(item)
    return nn.Sequential(*layers)


def gram_matrix(features: Tensor) -> Tensor:
    """[B, C, H, W] -> per-sample Gram matrices [B, C, C] divided by C*H*W, in float32
    (a sum over H*W products overflows float16 at 512px)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w).float()
    with torch.autocast(flat.device.type, enabled=False):
        return flat @ flat.transpose(1, 2) / (c * h * w)


def vgg_slices(features: nn.Sequential) -> nn.ModuleList:
    """VGG19 features[0:21] cut at relu1_1, relu2_1, relu3_1 and relu4_1 (`VGG_SLICES`);
    the slices share the layers of `features`, so its weights are theirs."""
    return nn.ModuleList(features[start:stop] for start, stop in VGG_SLICES)


def relus(slices: nn.ModuleList, images: Tensor) -> Iterator[Tensor]:
    """relu1_1..relu4_1 of ImageNet-normalized [B, 3, H, W] `images`, in one pass through
    VGG19: each slice starts from the previous one's output. A generator, so a caller that
    needs each activation only once (a Gram matrix) holds one at a time."""
    for block in slices:
        images = block(images)
        yield images


def gram_distance(activations: Iterable[Tensor], target_grams: Iterable[Tensor]) -> Tensor:
    """G: sum over the slices of MSE between the activations' [B, C, C] Gram matrices and the
    target's; the training loss and the golden-set meter share it, so both measure one G."""
    pairs = zip(activations, target_grams, strict=True)
    return sum(F.mse_loss(gram_matrix(f), target) for f, target in pairs)


class GramLoss(nn.Module):
    """G: Gram-matrix distance between student and teacher through frozen VGG19 slices."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.slices = vgg_slices(features)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> GramLoss:
        """Stays in eval mode: VGG19 is a fixed measuring instrument, never trained."""
        return super().train(False)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Scalar G; gradients flow through the student's side only."""
        with torch.no_grad():
            targets = [gram_matrix(f) for f in relus(self.slices, teacher)]
        return gram_distance(relus(self.slices, student), targets)


class LossTerms(NamedTuple):
    """The two terms of a distillation loss, each with its weight: training logs them apart,
    so a run shows how much the Gram term adds at its normalization."""

    mse: Tensor  # mse_weight * MSE(student, teacher)
    gram: Tensor  # gram_weight * G(student, teacher); zero for l1

    @property
    def total(self) -> Tensor:
        return self.mse + self.gram


class DistillationLoss(nn.Module):
    """mse_weight * MSE(student, teacher) + gram_weight * G(student, teacher), term by term."""

    def __init__(self, mse_weight: float, gram_weight: float, gram: GramLoss | None) -> None:
        super().__init__()
        if gram_weight and gram is None:
            raise ValueError("a Gram weight needs a GramLoss")
        self.mse_weight = mse_weight
        self.gram_weight = gram_weight
        self.gram = gram

    def forward(self, student: Tensor, teacher: Tensor) -> LossTerms:
        """student, teacher [B, 3, H, W] in ImageNet-normalized space -> the scalar terms."""
        mse = self.mse_weight * F.mse_loss(student, teacher)
        if self.gram is None:
            return LossTerms(mse, torch.zeros_like(mse))
        return LossTerms(mse, self.gram_weight * self.gram(student, teacher))


def build_loss(
    name: str, vgg_weights: str | None = None, options: Mapping[str, Any] | None = None
) -> DistillationLoss:
    """The paper's loss "l1", "l2" or "l3". VGG19 (only for l2/l3) gets the weights
    `student.pretrained` finds (`vgg_weights`: a path/URL, or "random")."""
    key = name.lower()
    if key not in LOSS_WEIGHTS:
        raise UserError(f"unknown loss {name!r}; choose one of: {', '.join(LOSS_WEIGHTS)}")
    mse_weight, gram_weight = LOSS_WEIGHTS[key]
    gram = GramLoss(load_vgg19_features(vgg_weights, options)) if gram_weight else None
    return DistillationLoss(mse_weight, gram_weight, gram)


def load_vgg19_features(
    weights: str | None, options: Mapping[str, Any] | None = None
) -> nn.Sequential:
    """VGG19 features[0:21] with ImageNet weights (see `student.pretrained`); random weights
    only when asked for, with `--vgg-weights random`."""
    features = vgg19_features()
    load_instrument(VGG19, weights, options, features)
    return features
