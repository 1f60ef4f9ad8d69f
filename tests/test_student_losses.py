"""The distillation losses l1, l2, l3 and the per-sample Gram term through frozen VGG19."""

from __future__ import annotations

import logging
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from common.errors import UserError
from student.losses import build_loss, gram_matrix
from student.pretrained import WeightsUnavailable
from tests.support.train_helpers import write_seeded_vgg19


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_seeded_vgg19(tmp_path_factory.mktemp("vgg") / "vgg19.pth")


def pair(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (student, teacher) batch of ImageNet-normalized-looking images."""
    gen = torch.Generator().manual_seed(seed)
    student, teacher = torch.randn(2, batch, 3, 32, 48, generator=gen)
    return student, teacher


def test_l1_is_mse_and_builds_no_vgg() -> None:
    loss = build_loss("l1")
    assert loss.gram is None
    assert not list(loss.parameters())
    student, teacher = pair()
    assert loss(teacher, teacher).total.item() == 0.0
    terms = loss(student, teacher)
    assert torch.allclose(terms.mse, F.mse_loss(student, teacher))
    assert terms.gram.item() == 0.0 and torch.equal(terms.total, terms.mse)


def test_gram_matrix_is_per_sample_and_normalized() -> None:
    features = torch.stack([torch.ones(2, 3, 4), 2 * torch.ones(2, 3, 4)])  # [B=2, C=2, 3, 4]
    gram = gram_matrix(features)
    assert gram.shape == (2, 2, 2)
    # sum over 12 positions of 1*1 (or 2*2), divided by C*H*W = 24
    assert torch.allclose(gram[0], torch.full((2, 2), 0.5))
    assert torch.allclose(gram[1], torch.full((2, 2), 2.0))


@pytest.mark.parametrize("name", ["l2", "l3"])
def test_gram_term_is_the_mean_over_samples(vgg_file: str, name: str) -> None:
    """A batch of two pairs scores the mean of each pair alone: Gram matrices never mix samples."""
    loss = build_loss(name, vgg_weights=vgg_file)
    student, teacher = pair()
    with torch.no_grad():
        both = loss(student, teacher).total
        alone = [loss(student[i : i + 1], teacher[i : i + 1]).total for i in range(2)]
        gram_both = loss.gram(student, teacher)
        gram_alone = [loss.gram(student[i : i + 1], teacher[i : i + 1]) for i in range(2)]
    assert torch.allclose(both, (alone[0] + alone[1]) / 2, rtol=1e-5)
    assert torch.allclose(gram_both, (gram_alone[0] + gram_alone[1]) / 2, rtol=1e-5)
    assert gram_both > 0


@pytest.mark.parametrize(
    ("name", "mse_weight", "gram_weight"), [("l2", 0.5, 0.5), ("L3", 0.7, 0.3)]
)
def test_weights_combine_mse_and_gram(
    vgg_file: str, name: str, mse_weight: float, gram_weight: float
) -> None:
    loss = build_loss(name, vgg_weights=vgg_file)
    student, teacher = pair(seed=1)
    with torch.no_grad():
        mse = F.mse_loss(student, teacher)
        gram = loss.gram(student, teacher)
        terms = loss(student, teacher)
    assert not torch.allclose(mse, gram, rtol=0.1)  # the weights are identifiable
    assert torch.allclose(terms.mse, mse_weight * mse, rtol=1e-5)
    assert torch.allclose(terms.gram, gram_weight * gram, rtol=1e-5)
    assert torch.equal(terms.total, terms.mse + terms.gram)


def test_vgg_is_frozen_and_loaded_from_file(vgg_file: str) -> None:
    loss = build_loss("l2", vgg_weights=vgg_file)
    loss.train()
    assert not loss.gram.training
    assert all(not p.requires_grad for p in loss.parameters())
    saved = torch.load(vgg_file, weights_only=True)
    assert torch.equal(loss.gram.slices[3][7].weight, saved["features.19.weight"])  # conv4_1
    student, teacher = pair()
    student.requires_grad_(True)
    loss(student, teacher).total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_unknown_loss_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown loss 'l4'; choose one of: l1, l2, l3"):
        build_loss("l4")


@pytest.fixture(autouse=True)
def no_weights_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache and downloads off, whatever this machine has; returns the
    cache's checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_weights_file_may_hold_all_of_torchvisions_vgg19(vgg_file: str, tmp_path: Path) -> None:
    """Layers the Gram term does not use (features.21+, the classifier) are ignored."""
    state = torch.load(vgg_file, weights_only=True)
    state |= {"features.34.bias": torch.zeros(512), "classifier.6.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "vgg19-full.pth")
    loss = build_loss("l2", vgg_weights=str(tmp_path / "vgg19-full.pth"))
    assert torch.equal(loss.gram.slices[0][0].weight, state["features.0.weight"])


def test_vgg_weights_in_the_torch_hub_cache_need_no_flag(
    vgg_file: str, no_weights_anywhere: Path
) -> None:
    no_weights_anywhere.mkdir(parents=True)
    shutil.copy(vgg_file, no_weights_anywhere / "vgg19-dcbb9e9d.pth")  # torchvision's name
    loss = build_loss("l3")
    saved = torch.load(vgg_file, weights_only=True)
    assert torch.equal(loss.gram.slices[3][7].weight, saved["features.19.weight"])


def test_no_vgg_weights_is_an_error_naming_the_flag_and_the_cache(
    monkeypatch: pytest.MonkeyPatch, no_weights_anywhere: Path
) -> None:
    """Offline, torchvision's download is never tried; the error says what would work."""
    calls: list[str] = []
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", calls.append)
    with pytest.raises(WeightsUnavailable) as error:
        build_loss("l2")
    assert calls == []
    message = str(error.value)
    assert "\n" not in message
    for part in ("--vgg-weights PATH_OR_URL", "vgg19-dcbb9e9d.pth", str(no_weights_anywhere)):
        assert part in message
    assert "HF_HUB_OFFLINE is set" in message
    assert message.endswith("or --vgg-weights random to use a random one")


def test_failed_download_is_an_error_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline_download(url: str, **kwargs: object) -> dict:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline_download)
    with pytest.raises(WeightsUnavailable, match=r"the download failed: .*Name or service"):
        build_loss("l3")


def test_random_vgg_is_an_opt_in_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        loss = build_loss("l3", vgg_weights="random")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--vgg-weights random" in warnings[0]
    student, teacher = pair()
    assert torch.isfinite(loss(student, teacher).total)


def test_bad_vgg_weights_are_user_errors(vgg_file: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        build_loss("l2", vgg_weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"cannot read .*junk\.pth as VGG19 weights"):
        build_loss("l2", vgg_weights=str(tmp_path / "junk.pth"))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"VGG19 weights: it has no features\.0\.bias"):
        build_loss("l2", vgg_weights=str(tmp_path / "partial.pth"))
    state = torch.load(vgg_file, weights_only=True)
    state["features.19.weight"] = state["features.19.weight"][:, :128]
    torch.save(state, tmp_path / "narrow.pth")
    with pytest.raises(
        UserError, match=r"features.19.weight is \[512, 128, 3, 3\], VGG19 has \[512, 256, 3, 3\]"
    ):
        build_loss("l2", vgg_weights=str(tmp_path / "narrow.pth"))
