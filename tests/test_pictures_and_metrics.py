"""The evaluation's metrics on known cases, checked against independent implementations, and
pictures that are matplotlib figures carrying their labels."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid import inception as fid
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from torchvision.models import alexnet, inception_v3
from torchvision.models.vgg import cfgs, make_layers

from common.pictures import DPI, contact_sheet, training_curves
from evaluation.cfsd import ROWS, cfsd
from evaluation.golden_metrics import ALEXNET, FID_BATCH, INCEPTION, ImageMeter, SetMeter
from evaluation.reporting import curves as run_curves
from student.inference import imagenet_normalize
from student.pretrained import RANDOM, WeightsUnavailable


@pytest.fixture(scope="module")
def vgg19() -> nn.Sequential:
    """torchvision's VGG19 features[0:21], random: the reference for the meter's VGG19."""
    torch.manual_seed(0)
    return make_layers(cfgs["E"])[:21].eval()


@pytest.fixture(scope="module")
def meter(vgg19: nn.Sequential, tmp_path_factory) -> ImageMeter:
    """The meter with `vgg19`'s weights, read from a file as torchvision names them."""
    path = tmp_path_factory.mktemp("weights") / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in vgg19.state_dict().items()}, path)
    return ImageMeter(str(path), RANDOM)


def smooth_image(seed: int = 0, size: int = 48) -> torch.Tensor:
    """An RGB picture with structure at several scales, values in [0, 1]."""
    low = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(0, 1)[0]


def distorted(image: torch.Tensor, kind: str) -> torch.Tensor:
    """`image` after a known distortion."""
    if kind == "noise":
        noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
        return (image + 0.1 * noise).clamp(0, 1)
    if kind == "brighter":
        return (image + 0.1).clamp(0, 1)
    if kind == "moved":
        return torch.roll(image, 2, dims=2)  # two pixels to the right, wrapping round
    if kind == "blur":  # 3x3 box filter
        return F.avg_pool2d(F.pad(image[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["noise", "brighter", "moved", "blur"])
def test_psnr_and_ssim_are_scikit_images(meter: ImageMeter, kind: str) -> None:
    """torchmetrics is called as the standard PSNR and SSIM: scikit-image's, with SSIM as Wang
    et al. 2004 (Gaussian window sigma 1.5, population covariance, data range 1, per channel).
    The tolerance allows for float32 against float64."""
    image = smooth_image()
    other = distorted(image, kind)
    a, b = (x.double().numpy().transpose(1, 2, 0) for x in (image, other))  # [H, W, 3]
    want_ssim = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    scores = meter.against_teacher(other, image)
    assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-4)
    assert scores["ssim"] == pytest.approx(want_ssim, abs=1e-5)


def test_lpips_and_losses_grow_with_the_change(meter: ImageMeter) -> None:
    image = smooth_image()
    same = meter.against_inputs(image, meter.inputs(image, image))
    assert same["lpips_content"] == pytest.approx(0, abs=1e-6)
    assert same["cfsd"] == pytest.approx(0, abs=1e-9)
    assert same["content_loss"] == 0 and same["style_loss"] == 0
    slight = meter.lpips_distance(image, distorted(image, "blur"))
    assert 0 < slight < meter.lpips_distance(image, smooth_image(seed=5))


def test_random_measuring_networks_give_the_same_figures_in_every_run() -> None:
    """`random` VGG19 and AlexNet mean little, but two runs must not differ by chance: each is
    seeded, whatever the global random state."""
    content, image = smooth_image(0), distorted(smooth_image(0), "noise")
    figures = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        meter = ImageMeter(RANDOM, RANDOM)
        figures.append(meter.against_inputs(image, meter.inputs(content, smooth_image(3))))
    assert figures[0] == figures[1]
    assert figures[0]["lpips_content"] > 0


def test_lpips_backbone_comes_from_the_given_file(tmp_path, monkeypatch) -> None:
    """No download: the AlexNet layers hold the file's tensors, and the report names the file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    features = {f"features.{k}": v for k, v in alexnet().features.state_dict().items()}
    path = tmp_path / "alexnet.pth"
    torch.save(features, path)
    meter = ImageMeter(RANDOM, str(path))
    assert meter.sources["AlexNet (LPIPS)"] == str(path)
    assert meter.sources["VGG19"] == RANDOM
    slices = meter.lpips.net.net  # the metric's LPIPS network's AlexNet slices
    assert torch.equal(slices.slice1.get_submodule("0").weight, features["features.0.weight"])
    assert torch.equal(slices.slice5.get_submodule("10").weight, features["features.10.weight"])


def test_offline_without_weights_names_the_flag_and_cache_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="--lpips-weights") as lpips:
        ImageMeter(RANDOM, None)
    assert ALEXNET.cache_file.name in str(lpips.value)
    with pytest.raises(WeightsUnavailable, match="--inception-weights") as inception:
        SetMeter(800, None)
    assert INCEPTION.cache_file.name in str(inception.value)
    small = SetMeter(4, None)  # too few pairs: no Inception needed, even offline
    assert small.scores({}) == {
        "fid": None,
        "art_fid": None,
        "fid_note": "needs >= 800 golden pairs, golden set has 4",
    }


@torch.no_grad()
def styleid_cfsd(features: nn.Module, image: torch.Tensor, content: torch.Tensor) -> float:
    """CFSD as StyleID's evaluation code writes it: whole similarity matrices, KL through
    `F.kl_div` of log-softmax against softmax with batchmean, positions in (w, h) order."""

    def similarity(x: torch.Tensor) -> torch.Tensor:
        f = features(x[None]).double()
        b, c, h, w = f.shape
        f = torch.transpose(f, 1, 3).reshape(b, h * w, c).div(c)
        return torch.bmm(f, f.transpose(1, 2))

    s_x, s_c = similarity(image), similarity(content)
    log_x = F.log_softmax(s_x, dim=-1).reshape(1, -1)
    return float(F.kl_div(log_x, F.softmax(s_c, dim=-1).reshape(1, -1), reduction="batchmean"))


def test_cfsd_is_styleids_definition_in_blocks() -> None:
    """On an image with more positions than a block, with a fixed feature network whose
    similarities are far from uniform (so the KL is large), blocks add up to the whole."""
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.ReLU())
    with torch.no_grad():
        features[0].weight.mul_(40)
    content = smooth_image(seed=1, size=200)  # 50 x 50 = 2500 positions > ROWS
    assert ROWS < (200 // 4) ** 2
    # the meter gives cfsd features of ImageNet-normalised images; the reference gets them too
    near, far = distorted(content, "blur"), smooth_image(seed=2, size=200)
    content, *images = (imagenet_normalize(t) for t in (content, near, far))
    scores = []
    for image in images:
        want = styleid_cfsd(features, image, content)
        assert want > 1
        scores.append(cfsd(features(image[None]), features(content[None])))
        assert scores[-1] == pytest.approx(want, rel=1e-9)
    assert scores[0] < scores[1]  # the blurred content is nearer than another image


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices of [B, C, H, W] features, divided by C*H*W (Gatys et al.'s, normalized)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


@torch.no_grad()
def torchvision_relus(features: nn.Sequential, image: torch.Tensor) -> list[torch.Tensor]:
    """relu1_1, relu2_1, relu3_1, relu4_1 of a [3, H, W] image in [0, 1]: torchvision's
    VGG19 `features` sliced at its own indices, each slice run on the previous one's output."""
    x = imagenet_normalize(image)[None]
    outputs = []
    for start, stop in ((0, 2), (2, 7), (7, 12), (12, 21)):
        x = features[start:stop](x)
        outputs.append(x)
    return outputs


def test_one_vgg_pass_per_image_gives_the_papers_figures(
    meter: ImageMeter, vgg19: nn.Sequential
) -> None:
    """The meter runs VGG19 once per image, and once per content and style for all the images
    of a pair; its figures are CFSD (StyleID's code) at relu3_1, the relu4_1 MSE and the sum
    over relu1_1..relu4_1 of the Gram matrices' MSE, each written out here."""
    torch.manual_seed(0)
    # two stylized images of a pair at 64 px (the pair's activations serve both), one at 96
    for size, count in ((64, 2), (96, 1)):
        content, style = smooth_image(seed=1, size=size), smooth_image(seed=2, size=size)
        inputs = meter.inputs(content, style)
        c, s = torchvision_relus(vgg19, content), torchvision_relus(vgg19, style)
        for image in [torch.rand(3, size, size), distorted(content, "noise")][:count]:
            x = torchvision_relus(vgg19, image)
            want = {
                "cfsd": styleid_cfsd(nn.Identity(), x[2][0], c[2][0]),
                "content_loss": float(F.mse_loss(x[3], c[3])),
                "style_loss": sum(
                    float(F.mse_loss(gram(a), gram(b))) for a, b in zip(x, s, strict=True)
                ),
            }
            scores = meter.against_inputs(image, inputs)
            for figure, value in want.items():
                assert value > 0
                assert scores[figure] == pytest.approx(value, rel=1e-5)


def test_fid_and_art_fid_over_a_set() -> None:
    """FID through torchmetrics with a small stand-in feature network: zero for the style
    images themselves, more for other images; ArtFID = (1 + LPIPS) * (1 + FID)."""
    pairs = FID_BATCH + 8  # a full batch fed on the way, the rest when scored
    styles = [smooth_image(seed=s, size=32) for s in range(pairs)]
    others = [distorted(smooth_image(seed=s + 50, size=32), "brighter") for s in range(pairs)]
    features = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
    meter = SetMeter(pairs, None, minimum=pairs, features=features)
    for style, other in zip(styles, others, strict=True):  # a pair at a time, as evaluated
        meter.update(style, {"teacher": style, "student": other})
    scores = meter.scores({"teacher": 0.5, "student": 0.25})
    fid, art_fid = scores["fid"], scores["art_fid"]
    assert fid["teacher"] == pytest.approx(0, abs=1e-3)
    assert fid["student"] > 0.01
    assert art_fid["student"] == pytest.approx(1.25 * (1 + fid["student"]))
    assert "ArtFID" in scores["fid_note"]
    assert not meter.pending  # every pair counted


def random_fid_inception_state() -> dict[str, torch.Tensor]:
    """A state dict shaped like pytorch-fid's Inception (torchvision's Inception v3 with its
    FID blocks, as `pytorch_fid.inception.fid_inception_v3` builds it), random values."""
    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    blocks = {
        "Mixed_5b": fid.FIDInceptionA(192, pool_features=32),
        "Mixed_5c": fid.FIDInceptionA(256, pool_features=64),
        "Mixed_5d": fid.FIDInceptionA(288, pool_features=64),
        "Mixed_6b": fid.FIDInceptionC(768, channels_7x7=128),
        "Mixed_6c": fid.FIDInceptionC(768, channels_7x7=160),
        "Mixed_6d": fid.FIDInceptionC(768, channels_7x7=160),
        "Mixed_6e": fid.FIDInceptionC(768, channels_7x7=192),
        "Mixed_7b": fid.FIDInceptionE_1(1280),
        "Mixed_7c": fid.FIDInceptionE_2(2048),
    }
    for name, block in blocks.items():
        setattr(net, name, block)
    return net.state_dict()


def test_fid_inception_comes_from_the_given_file(tmp_path, monkeypatch) -> None:
    """No download and no lasting change to torch hub's folder. (FID itself is checked with a
    small stand-in above: with 2048 features one FID takes minutes on two busy cores.)"""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    state = random_fid_inception_state()
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    meter = SetMeter(3, str(path), minimum=3)
    assert torch.hub.get_dir() == str(tmp_path / "empty" / "hub")
    assert meter.source == str(path)
    first = meter.features.inception.blocks[0][0].conv.weight
    assert torch.equal(first, state["Conv2d_1a_3x3.conv.weight"])
    features = meter.features(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 2048) and features.isfinite().all()


def png_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.info["Software"].startswith("Matplotlib")
    return image.convert("RGB")


def count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 8) -> int:
    pixels = np.asarray(image).astype(int)
    return int((np.abs(pixels - colour).max(-1) <= tolerance).sum())


def test_contact_sheet_shows_every_image_with_labels():
    red, blue, green = (Image.new("RGB", (40, 40), c) for c in ("red", "blue", "lime"))
    rows = [
        (f"pair {n}", [(red, "c.png"), (blue, "s.png"), (green, "t"), (blue, "s")]) for n in (1, 2)
    ]
    sheet = png_image(contact_sheet(["content", "style", "teacher", "student"], rows))
    assert sheet.size == (round((2.2 * 4 + 0.6) * DPI), round(((2.2 + 0.35) * 2 + 0.3) * DPI))
    cell = (2.2 * DPI * 0.8) ** 2  # each image drawn at least ~80% of its cell's width
    assert count(sheet, (255, 0, 0)) > 2 * cell
    assert count(sheet, (0, 0, 255)) > 4 * cell
    assert count(sheet, (0, 255, 0)) > 2 * cell
    header = np.asarray(sheet.convert("L"))[:15]
    assert (header < 100).sum() > 50  # the column titles


def test_curves_are_two_labelled_plots_with_every_series():
    png = training_curves(
        [1, 2, 3], {"train loss": [1, 0.5, 0.4], "val loss": [1.2, 0.9, 0.8]}, [1e-4, 5e-5, 2.5e-5]
    )
    curves = png_image(png)
    assert curves.size == (800, 600)
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):  # tab:blue, orange, green
        assert count(curves, colour, tolerance=2) > 50
    # the loss's terms get a panel of their own, on a log scale: a Gram term a thousand times
    # below the pixel term still shows
    terms = {"train pixel MSE term": [0.9, 0.45, 0.35], "train Gram term": [1e-3, 8e-4, 5e-4]}
    with_terms = png_image(
        training_curves([1, 2, 3], {"train loss": [1, 0.5, 0.4]}, [1e-4] * 3, terms)
    )
    assert with_terms.size == (800, 600)
    purple, brown = (148, 103, 189), (140, 86, 75)  # tab:purple, tab:brown
    assert count(with_terms, purple, tolerance=2) > 50
    assert count(with_terms, brown, tolerance=2) > 50
    assert count(curves, purple, tolerance=2) == 0
    # a run's curves show the terms only where the loss has a Gram term (l2/l3): an l1 run's is
    # zero, and runs recorded before the terms have none
    record = {"train_loss": 0.5, "val_loss": 0.6, "lr": 1e-4, "train_loss_mse": 0.45}
    l3 = [{**record, "epoch": e, "train_loss_gram": 0.05 / e} for e in (1, 2)]
    assert count(png_image(run_curves(l3)), purple, tolerance=2) > 50
    for records in ([{**r, "train_loss_gram": 0.0} for r in l3], [{**record, "epoch": 1}]):
        assert count(png_image(run_curves(records)), purple, tolerance=2) == 0
    empty = png_image(training_curves([], {"train loss": [], "val loss": []}, []))
    assert empty.size == (800, 600)
