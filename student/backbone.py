"""ResNet-50 encoders for the content and style images, with frozen BatchNorm as in DETR/STTR."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from student.pretrained import RESNET50, WeightsUnavailable, load_pretrained

logger = logging.getLogger(__name__)

STEM = ("conv1", "bn1", "relu", "maxpool")
LAYER_CHANNELS = {1: 256, 2: 512, 3: 1024, 4: 2048}


class ResNetEncoder(nn.Sequential):
    """ResNet-50 from the stem through `layer{last_layer}`: [B, 3, H, W] -> [B, C, H/s, W/s].

    STTR stops the content encoder at layer2 (512 channels, stride 8) so the tokens keep
    enough spatial detail to rebuild the image, and runs the style encoder to layer4
    (2048 channels, stride 32) where features describe texture and colour rather than layout.
    BatchNorm is frozen (fixed statistics and affine): batches are small and the statistics
    come with the ImageNet weights.
    """

    def __init__(self, last_layer: int) -> None:
        resnet = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        names = [*STEM, *(f"layer{i}" for i in range(1, last_layer + 1))]
        super().__init__(OrderedDict((name, getattr(resnet, name)) for name in names))
        self.num_channels = LAYER_CHANNELS[last_layer]
        self.stride = 2 ** (last_layer + 1)


def load_imagenet_resnet50(
    weights: str | None, options: Mapping[str, Any] | None, *encoders: ResNetEncoder
) -> bool:
    """Load ImageNet ResNet-50 weights (see `student.pretrained`) into `encoders`; False, with
    one warning, when none are available.

    Unlike VGG19's, missing weights are a warning (SPEC 5): the student still learns from
    random encoders, only more slowly, and `--init scratch` is the way to ask for that on
    purpose. A weights file that was named but does not fit is an error.
    """
    try:
        return load_pretrained(RESNET50, weights, options, *encoders)
    except WeightsUnavailable as exc:
        logger.warning(
            "%s; the student's encoders start from random init, which needs far more "
            "training to be useful (--init scratch to ask for that)",
            exc,
        )
        return False
