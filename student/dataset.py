"""(content, style, target) triples from a run's manifests, prepared as the student trains on them.

Content and style are read from their manifest URLs and centre-cropped + resized (LANCZOS) to
the target's size, which is the teacher resolution: the student sees exactly what the teacher
saw. With a `DecodedCache` each image is decoded once per node and later epochs crop the stored
uint8 arrays, which gives the same samples several times faster. A pair whose files are missing
or unreadable yields `None`; `collate_triples` drops it and counts it, so one bad file costs one
item, never the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from common.errors import ImageError, UserError
from common.images import center_crop_resize, decode_image
from common.manifest import ManifestLine, no_manifests, read_manifest
from common.run_info import read_run_info
from common.storage import Storage, read_url
from student.decoded_cache import DecodedCache

logger = logging.getLogger(__name__)


class Triple(NamedTuple):
    """One training example, each tensor [3, H, W]: float32 in [0, 1], or uint8 as decoded."""

    content: torch.Tensor
    style: torch.Tensor
    target: torch.Tensor


class Batch(NamedTuple):
    """Stacked triples [B, 3, H, W] plus how many items of this batch were unreadable."""

    content: torch.Tensor
    style: torch.Tensor
    target: torch.Tensor
    skipped: int

    @property
    def size(self) -> int:
        return self.content.shape[0]

    def to(self, device: torch.device) -> Batch:
        move = {"device": device, "non_blocking": True}
        return Batch(
            self.content.to(**move), self.style.to(**move), self.target.to(**move), self.skipped
        )


@dataclass(frozen=True)
class Splits:
    """The manifest lines a training run uses; golden lines are never trained on.

    `style_images` maps each learned style (an LSAST prompt file) the lines name to the
    images it was learned from: the student's style input for those pairs is one of them."""

    train: list[ManifestLine]
    val: list[ManifestLine]
    style_images: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:  # Ray shows the loop config; thousands of lines would drown it
        return f"Splits(train={len(self.train)} pairs, val={len(self.val)} pairs)"


def read_splits(storage: Storage, teacher_hash: str | None = None) -> Splits:
    """Train and val lines of one teacher; a missing root, no manifests or an empty split is a
    `UserError`, and fewer manifest parts than run.json planned is a warning."""
    if not storage.fs.exists(storage.root_path):
        raise UserError(f"--data {storage.root}: no such directory or prefix")
    lines = read_manifest(storage, teacher_hash)
    if not lines:
        raise UserError(no_manifests(storage, f"manifests/{teacher_hash}"))
    if (warning := unfinished_generation(storage, lines[0].teacher_hash, len(lines))) is not None:
        logger.warning(warning)
    splits = Splits(*([line for line in lines if line.split == name] for name in ("train", "val")))
    for name, found in (("train", splits.train), ("val", splits.val)):
        if not found:
            raise UserError(f"{storage.url('manifests')}: no {name} pairs")
    return splits


def unfinished_generation(storage: Storage, teacher_hash: str, listed: int) -> str | None:
    """How many planned pairs have no manifest line, when run.json planned more than the
    manifests list (generation unfinished, parts deleted, or inputs that were unusable), else
    None. A root without run.json (or one written for another teacher) has no plan to compare
    with.
    """
    info = read_run_info(storage)
    if info is None or info.get("teacher_hash") != teacher_hash:
        return None
    pairs = info.get("pairs")
    if not isinstance(pairs, int) or listed >= pairs:
        return None
    failures = sum(
        len(storage.read_bytes(key).splitlines())
        for key in storage.list(f"failures/{teacher_hash}")
    )
    return (
        f"run.json planned {pairs} pairs, {storage.url('manifests')} lists {listed}: "
        f"{pairs - listed} planned pairs have no manifest line (generation unfinished, parts "
        f"deleted, or unusable inputs: {failures} failure records under "
        f"{storage.url('failures')}; run jobs.generate again with the same options to finish "
        "or retry them); training on the listed pairs only"
    )


def teacher_resolution(storage: Storage, line: ManifestLine) -> int | None:
    """Side of one target image, or None when that target is unreadable (it will be skipped)."""
    try:
        return min(decode_image(storage.read_bytes(line.target), line.target).size)
    except (ImageError, OSError):
        return None


def collate_triples(items: list[Triple | None]) -> Batch:
    """Stack the readable triples of a batch and count the rest; all-bad gives an empty batch."""
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        empty = torch.empty(0, 3, 0, 0)
        return Batch(empty, empty, empty, skipped)
    return Batch(*(torch.stack(parts) for parts in zip(*good, strict=True)), skipped=skipped)


class TripleDataset(Dataset):
    """Triples of one split: random crops and flips for training, centre crops otherwise.

    Augmentation is drawn from (seed, epoch, index) alone, so it does not depend on which
    worker or DataLoader process loads an item, and a resumed epoch repeats it exactly. Images
    are cropped while still uint8 (a quarter of the pixels to convert at a half-size crop).
    """

    def __init__(
        self,
        storage: Storage,
        lines: list[ManifestLine],
        crop_size: int,
        train: bool,
        seed: int = 0,
        cache: DecodedCache | None = None,
        style_images: dict[str, list[str]] | None = None,
    ) -> None:
        self.storage = storage
        self.style_images = style_images or {}
        self.cache = cache
        self.lines = lines
        self.crop_size = crop_size
        self.train = train
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation the next pass draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> Triple | None:
        line = self.lines[index]
        try:
            triple = self.load(line, self.style_url(line, index))
        except (UserError, OSError) as exc:  # ImageError is a UserError
            logger.warning("skipping %s: %s", self.storage.url(line.target), exc)
            return None
        cropped = self.augment(triple, index) if self.train else self.centre(triple)
        return Triple(*(to_unit_range(image) for image in cropped))

    def style_url(self, line: ManifestLine, index: int) -> str | None:
        """For a pair of a learned style (LSAST), the one of its images this item shows: drawn
        afresh each training epoch, so the student sees the whole collection, and fixed for
        validation, so its loss compares across epochs. None for a style image (StyleID)."""
        images = self.style_images.get(line.style)
        if images is None:
            return None
        if self.train:
            return images[
                np.random.default_rng([self.seed, self.epoch, index, 1]).integers(len(images))
            ]
        return images[index % len(images)]

    def load(self, line: ManifestLine, style_url: str | None = None) -> Triple:
        """Whole uint8 images at the teacher resolution; unreadable or too small files raise."""
        triple = decode_triple(self.storage, line, self.cache, style_url)
        size = triple.target.shape[-1]
        if size < self.crop_size:
            raise ImageError(f"{line.target}: {size}px is smaller than the crop {self.crop_size}")
        return triple

    def centre(self, triple: Triple) -> Triple:
        """The same central crop of all three images."""
        return Triple(
            *(
                crop(image, *centre_offset(image, self.crop_size), self.crop_size)
                for image in triple
            )
        )

    def augment(self, triple: Triple, index: int) -> Triple:
        """One random crop + flip shared by content and target; the style gets its own crop."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top, left = random_offset(rng, triple.content, self.crop_size)
        content = crop(triple.content, top, left, self.crop_size)
        target = crop(triple.target, top, left, self.crop_size)
        if rng.random() < 0.5:
            content, target = content.flip(-1), target.flip(-1)
        style = crop(
            triple.style, *random_offset(rng, triple.style, self.crop_size), self.crop_size
        )
        return Triple(content, style, target)


def load_triple(storage: Storage, line: ManifestLine, style_url: str | None = None) -> Triple:
    """Content and style as the teacher saw them (centre square at the target's size) and the
    target, each [3, S, S] in [0, 1]; unreadable files raise. `style_url` as for
    `decode_triple`."""
    triple = decode_triple(storage, line, style_url=style_url)
    return Triple(*(to_unit_range(image) for image in triple))


def decode_triple(
    storage: Storage,
    line: ManifestLine,
    cache: DecodedCache | None = None,
    style_url: str | None = None,
) -> Triple:
    """`load_triple`'s images as uint8 [3, S, S], read from `cache` when it holds them (and
    stored there when it does not); `style_url`, an image of a learned style, stands for the
    line's style (cached under the style's digest and its URL)."""

    def cached(
        kind: str, source_hash: str, size: int | None, decode: Callable[[], np.ndarray]
    ) -> torch.Tensor:
        path = cache.path(kind, source_hash, size) if cache else None
        array = cache.get(path, size) if cache else None
        if array is None:
            array = decode()
            if cache:
                cache.put(path, array)
        return torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1)

    def target() -> np.ndarray:
        image = decode_image(storage.read_bytes(line.target), line.target)
        return np.asarray(center_crop_resize(image, min(image.size)), dtype=np.uint8)

    def square(url: str, size: int) -> np.ndarray:
        image = decode_image(read_url(url, storage.options), url)
        return np.asarray(center_crop_resize(image, size), dtype=np.uint8)

    target_image = cached("target", line.sha256, None, target)
    size = target_image.shape[-1]
    return Triple(
        content=cached("content", line.content_id, size, lambda: square(line.content, size)),
        style=cached(
            "style",
            line.style_id if style_url is None else f"{line.style_id}/{style_url}",
            size,
            lambda: square(style_url or line.style, size),
        ),
        target=target_image,
    )


def to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """uint8 [3, H, W] -> float32 in [0, 1], exactly as `common.images.to_tensor` converts."""
    return image.float().div_(255.0)


def crop(image: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return image[:, top : top + size, left : left + size]


def centre_offset(image: torch.Tensor, size: int) -> tuple[int, int]:
    return (image.shape[1] - size) // 2, (image.shape[2] - size) // 2


def random_offset(rng: np.random.Generator, image: torch.Tensor, size: int) -> tuple[int, int]:
    return (
        int(rng.integers(0, image.shape[1] - size + 1)),
        int(rng.integers(0, image.shape[2] - size + 1)),
    )
