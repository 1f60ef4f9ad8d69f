"""Image metrics on known cases, and pictures that carry their labels."""

import math

import numpy as np
import torch
from PIL import Image

from common.image_metrics import mse, psnr, ssim
from common.pictures import contact_sheet, line_chart


def test_metrics_on_known_cases():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert mse(image, image) == 0 and psnr(image, image) == math.inf
    assert abs(ssim(image, image) - 1) < 1e-6
    shifted = (image + 0.1).clamp(0, 1)
    assert abs(psnr(image, shifted) - 10 * math.log10(1 / mse(image, shifted))) < 1e-9
    noisy = image + 0.3 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    assert ssim(image, noisy.clamp(0, 1)) < ssim(image, shifted) < 1
    assert abs(mse(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)) - 0.25) < 1e-9


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
