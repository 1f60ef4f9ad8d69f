"""The student's dataset: splits, crops that keep content and target aligned, seeding, bad files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from benchmarks.synthetic_run import write_synthetic_run
from common.errors import UserError
from common.ids import sha256_hex
from common.images import png_bytes
from common.manifest import read_manifest
from common.storage import Storage
from student.dataset import TripleDataset, collate_triples, read_splits
from student.decoded_cache import DecodedCache

CROP = 32


@pytest.fixture
def run(tmp_path: Path) -> Storage:
    return write_synthetic_run(tmp_path, n_content=4, n_style=3, size=64)


def blend_residual(triple: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """target - 0.7 * content: constant per channel iff content and target share a crop/flip."""
    content, _, target = triple
    return target - 0.7 * content


def test_splits_hold_train_and_val_only(run: Storage) -> None:
    splits = read_splits(run)
    golden = {line.content_id for line in read_manifest(run, splits=("golden",))}
    assert (len(splits.train), len(splits.val)) == (6, 3)
    assert {line.split for line in splits.train} == {"train"}
    assert {line.split for line in splits.val} == {"val"}
    assert golden.isdisjoint(line.content_id for line in splits.train + splits.val)


def test_missing_root_and_empty_split_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such directory"):
        read_splits(Storage(str(tmp_path / "absent")))
    with pytest.raises(UserError, match="no train pairs"):  # one style: all val or golden
        read_splits(write_synthetic_run(tmp_path / "no-train", n_content=2, n_style=1))


@pytest.mark.parametrize("train", [True, False])
def test_items_are_aligned_crops_in_unit_range(run: Storage, train: bool) -> None:
    splits = read_splits(run)
    dataset = TripleDataset(run, splits.train if train else splits.val, CROP, train, seed=3)
    for index in range(len(dataset)):
        triple = dataset[index]
        assert [tuple(x.shape) for x in triple] == [(3, CROP, CROP)] * 3
        assert all(x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 for x in triple)
        residual = blend_residual(triple)
        spread = residual - residual.mean(dim=(1, 2), keepdim=True)
        assert spread.abs().max() < 0.02  # PNG rounding only


def test_validation_takes_the_centre_crop(run: Storage) -> None:
    dataset = TripleDataset(run, read_splits(run).val, CROP, train=False)
    whole = dataset.load(dataset.lines[0])
    start = (whole.content.shape[1] - CROP) // 2
    for part, full in zip(dataset[0], whole, strict=True):
        assert torch.equal(part, full[:, start : start + CROP, start : start + CROP] / 255)


def test_augmentation_depends_on_seed_epoch_and_index_only(run: Storage) -> None:
    lines = read_splits(run).train

    def all_items(seed: int, epoch: int) -> torch.Tensor:
        dataset = TripleDataset(run, lines, CROP, train=True, seed=seed)  # a fresh worker's copy
        dataset.set_epoch(epoch)
        return torch.stack([torch.stack(dataset[index]) for index in range(len(dataset))])

    first = all_items(seed=0, epoch=1)
    assert torch.equal(first, all_items(seed=0, epoch=1))
    assert not torch.equal(first, all_items(seed=0, epoch=2))
    assert not torch.equal(first, all_items(seed=1, epoch=1))


def test_missing_and_corrupt_files_are_skipped_and_counted(run: Storage, tmp_path: Path) -> None:
    lines = read_splits(run).train
    run.write_bytes(lines[0].target, b"not a png")
    lines[1] = dataclasses.replace(lines[1], content=str(tmp_path / "gone.png"))
    dataset = TripleDataset(run, lines, CROP, train=True)
    assert dataset[0] is None and dataset[1] is None
    batches = list(DataLoader(dataset, batch_size=4, collate_fn=collate_triples))
    assert sum(batch.skipped for batch in batches) == 2
    assert sum(batch.size for batch in batches) == len(lines) - 2


def test_an_all_bad_batch_is_empty_not_an_error() -> None:
    batch = collate_triples([None, None])
    assert (batch.size, batch.skipped) == (0, 2)


def all_samples(dataset: TripleDataset) -> list[torch.Tensor]:
    return [torch.stack(dataset[index]) for index in range(len(dataset))]


def test_decoded_cache_gives_the_same_samples_without_reading_pngs(
    run: Storage, tmp_path: Path
) -> None:
    lines = read_splits(run).train
    expected = all_samples(TripleDataset(run, lines, CROP, train=True, seed=5))
    cached = TripleDataset(run, lines, CROP, train=True, seed=5, cache=DecodedCache(tmp_path / "c"))
    first = all_samples(cached)  # decodes and stores
    for line in lines:  # later epochs must not need the source files
        run.fs.rm(run.path(line.target))
    second = all_samples(cached)
    for want, got_first, got_second in zip(expected, first, second, strict=True):
        assert torch.equal(want, got_first) and torch.equal(want, got_second)


def test_a_regenerated_target_or_a_damaged_entry_is_not_read_from_the_cache(
    run: Storage, tmp_path: Path
) -> None:
    lines = read_splits(run).train[:2]
    cache = DecodedCache(tmp_path / "c")
    all_samples(TripleDataset(run, lines, CROP, train=False, cache=cache))
    new_target = png_bytes(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(9)))
    run.write_bytes(lines[0].target, new_target)  # regenerated: the manifest has a new sha256
    lines[0] = dataclasses.replace(lines[0], sha256=sha256_hex(new_target))
    cache.path("target", lines[1].sha256).write_bytes(b"damaged")
    fresh = all_samples(TripleDataset(run, lines, CROP, train=False))
    from_cache = all_samples(TripleDataset(run, lines, CROP, train=False, cache=cache))
    for want, got in zip(fresh, from_cache, strict=True):
        assert torch.equal(want, got)
