"""ResNet-50 encoders for the content and style images, with frozen BatchNorm as in DETR/STTR."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping

import torchvision
from torch import Tensor, nn
from torchvision.models import ResNet50_Weights
from torchvision.ops import FrozenBatchNorm2d

from common.errors import first_line

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

    def load_resnet_state(self, state: Mapping[str, Tensor]) -> None:
        """Copy the layers this encoder has from a torchvision ResNet-50 state dict."""
        own = self.state_dict().keys()
        self.load_state_dict({key: value for key, value in state.items() if key in own})


def imagenet_resnet50_state() -> dict[str, Tensor] | None:
    """torchvision's ImageNet ResNet-50 weights, or None with one warning when unavailable."""
    try:
        resnet = torchvision.models.resnet50(weights=ResNet50_Weights.IMAGENET1K_V1)
    except (OSError, RuntimeError) as exc:  # offline, blocked or corrupt download
        logger.warning(
            "ImageNet ResNet-50 weights are unavailable (%s); the student's encoders start "
            "from random init, which needs far more training to be useful",
            first_line(exc),
        )
        return None
    return resnet.state_dict()
