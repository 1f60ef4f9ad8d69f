"""Image metrics on known cases, and pictures that carry their labels."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from common.image_metrics import mse, psnr, ssim
from common.pictures import contact_sheet, line_chart


def test_metrics_on_known_cases():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert mse(image, image) == 0 and psnr(image, image) == math.inf
    assert abs(ssim(image, image) - 1) < 1e-6
    shifted = (image + 0.1).clamp(0, 1)
    noisy = image + 0.3 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    assert ssim(image, noisy.clamp(0, 1)) < ssim(image, shifted) < 1
    assert abs(mse(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)) - 0.25) < 1e-9


def smooth_image() -> torch.Tensor:
    """A 48x48 RGB picture with structure at several scales, values in [0, 1]."""
    low = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    return F.interpolate(low, size=48, mode="bicubic", align_corners=False).clamp(0, 1)[0]


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
def test_psnr_and_ssim_agree_with_scikit_image(kind: str) -> None:
    """Our PSNR and SSIM are the standard ones: scikit-image's, with SSIM configured as Wang et
    al. 2004 (Gaussian window sigma 1.5, population covariance, data range 1, per channel).
    The tolerance allows for our float32 against its float64."""
    image = smooth_image()
    other = distorted(image, kind)
    a, b = (x.double().numpy().transpose(1, 2, 0) for x in (image, other))  # [H, W, 3]
    want_psnr = peak_signal_noise_ratio(a, b, data_range=1.0)
    want_ssim = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    assert psnr(image, other) == pytest.approx(want_psnr, abs=1e-5)
    assert ssim(image, other) == pytest.approx(want_ssim, abs=1e-5)


def ink_in(sheet: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Whether a white label strip has dark pixels (text) in it."""
    return bool((np.asarray(sheet.crop(box).convert("L")) < 100).any())


def test_contact_sheet_places_labelled_inputs_and_cells():
    red, blue, green = (Image.new("RGB", (40, 40), c) for c in ("red", "blue", "green"))
    sheet = contact_sheet(
        [("c0", red), ("c1", red)],
        [("s0", blue)],
        {(0, 0): {"teacher": green, "student": blue}, (1, 0): {"teacher": green, "student": blue}},
        thumb=64,
    )
    assert sheet.size == (8 + 64 + 8 + (2 * 64 + 8) + 8, 8 + 3 * (64 + 18 + 8))
    row_y = [8 + r * (64 + 18 + 8) for r in range(3)]
    column_x = [8, 8 + 64 + 8, 8 + 64 + 8 + 64 + 8]
    assert sheet.getpixel((column_x[1] + 5, row_y[0] + 5)) == (0, 0, 255)  # style header
    assert sheet.getpixel((column_x[0] + 5, row_y[1] + 5)) == (255, 0, 0)  # content row
    assert sheet.getpixel((column_x[1] + 5, row_y[1] + 5)) == (0, 128, 0)  # teacher
    assert sheet.getpixel((column_x[2] + 5, row_y[2] + 5)) == (0, 0, 255)  # student
    for x in column_x:
        for y in row_y[1:]:
            assert ink_in(sheet, (x, y + 64, x + 64, y + 64 + 18)), (x, y)
    assert not ink_in(sheet, (column_x[0], row_y[0], column_x[0] + 64, row_y[0] + 64 + 18))


def test_line_chart_draws_each_series():
    chart = line_chart(
        {"train": [(1, 1.0), (2, 0.5)], "val": [(1, 1.2), (2, 0.9)]}, "loss", "epoch"
    )
    pixels = np.asarray(chart)
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (pixels == colour).all(-1).sum() > 50
