"""The pixel spaces students work in: STTR takes ImageNet-normalized images, MicroAST plain RGB
in [0, 1]. Each student names its space, and every caller converts through it, so training
targets, inference and exports agree with the network whatever its architecture."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageSpace:
    """Per-channel affine map from RGB in [0, 1] to what a network reads and writes."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """mean and std shaped [3, 1, 1] on `x`'s device and dtype."""
        mean = x.new_tensor(self.mean).view(3, 1, 1)
        std = x.new_tensor(self.std).view(3, 1, 1)
        return mean, std

    def normalize(self, x: Tensor) -> Tensor:
        """[..., 3, H, W] in [0, 1] -> this space."""
        if self is UNIT:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of `normalize` (no clamping)."""
        if self is UNIT:
            return x
        mean, std = self._stats(x)
        return x * std + mean

    def to_imagenet(self, x: Tensor) -> Tensor:
        """A network output in this space -> ImageNet-normalized, where the distillation loss
        (and its VGG19 Gram term) measures every architecture alike."""
        return x if self is IMAGENET else IMAGENET.normalize(self.denormalize(x))


IMAGENET = ImageSpace("imagenet", IMAGENET_MEAN, IMAGENET_STD)
UNIT = ImageSpace("unit", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def imagenet_normalize(x: Tensor) -> Tensor:
    """[..., 3, H, W] in [0, 1] -> ImageNet-normalized (STTR's space and VGG19's input)."""
    return IMAGENET.normalize(x)


def imagenet_denormalize(x: Tensor) -> Tensor:
    """Inverse of `imagenet_normalize` (no clamping)."""
    return IMAGENET.denormalize(x)
