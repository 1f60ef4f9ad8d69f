"""Image I/O: bad inputs raise ImageError; crops are square; PNGs round-trip exactly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from common.errors import ImageError
from common.images import center_crop_resize, decode_image, load_square, png_bytes, to_tensor


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds no pixels: checking it must not decode anything."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def test_decodes_a_valid_image_to_rgb() -> None:
    image = decode_image(encode(random_image(20, 10).convert("L")))
    assert (image.mode, image.size) == ("RGB", (20, 10))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode(random_image(64, 64))[:300], "corrupt"),  # truncated in the pixel data
        (b"just some text, not an image", "not a readable image"),
        (b"", "not a readable image"),
    ],
)
def test_rejects_unusable_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=f"photo.jpg: {reason}"):
        decode_image(data, name="photo.jpg")


def test_rejects_too_many_pixels_from_the_header() -> None:
    with pytest.raises(ImageError, match="8000x8000 has more than 40000000 pixels"):
        decode_image(png_header_only(8000, 8000))  # no pixel data: only the header is read
    with pytest.raises(ImageError, match="more than 199 pixels"):
        decode_image(encode(random_image(20, 10)), max_pixels=199)
    with pytest.raises(ImageError, match="too many pixels"):  # past Pillow's own bomb limit
        decode_image(png_header_only(30000, 30000), max_pixels=10**10)


def test_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode_image(encode(random_image(40, 20), "JPEG", exif=exif.tobytes()))
    assert image.size == (20, 40)


def test_center_crop_resize_takes_the_middle_square() -> None:
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, :100] = (255, 0, 0)
    pixels[:, 100:200] = (0, 255, 0)
    pixels[:, 200:] = (0, 0, 255)
    wide = Image.fromarray(pixels, "RGB")
    square = center_crop_resize(wide, 64)
    assert square.size == (64, 64)
    assert np.array_equal(np.unique(np.asarray(square).reshape(-1, 3), axis=0), [[0, 255, 0]])
    assert center_crop_resize(wide.transpose(Image.Transpose.ROTATE_90), 100).size == (100, 100)


def test_load_square_gives_a_unit_range_tensor() -> None:
    tensor = load_square(encode(random_image(48, 30)), 16)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    assert tensor.min() >= 0 and tensor.max() <= 1


def test_png_bytes_round_trip_exactly() -> None:
    levels = torch.randint(0, 256, (3, 17, 23), generator=torch.Generator().manual_seed(0))
    tensor = levels.float() / 255
    decoded = to_tensor(decode_image(png_bytes(tensor)))
    assert torch.equal(decoded, tensor)
    assert torch.equal((decoded * 255).round().long(), levels)


def test_png_bytes_clamps_out_of_range_values() -> None:
    tensor = torch.tensor([-0.5, 0.5, 1.5]).view(3, 1, 1).expand(3, 2, 2)
    decoded = to_tensor(decode_image(png_bytes(tensor)))
    assert (decoded[:, 0, 0] * 255).round().long().tolist() == [0, 128, 255]


@pytest.mark.parametrize("size", [(103, 100), (100, 107), (64, 61), (100, 101), (40, 40)])
def test_center_crop_matches_torchvision_center_crop(size: tuple[int, int]) -> None:
    """Margins of 4k+3 pixels: a floored offset is one pixel off the reference's rounded one."""
    image = random_image(*size, seed=3)
    side = min(size)
    expected = torchvision.transforms.CenterCrop(side)(image)
    assert np.array_equal(np.asarray(center_crop_resize(image, side)), np.asarray(expected))


def uniform(mode: str, value: object, size: tuple[int, int] = (6, 4)) -> Image.Image:
    return Image.new(mode, size, value)  # type: ignore[arg-type]


def sixteen_bit_big_endian(level: int) -> Image.Image:
    return Image.frombytes("I;16B", (6, 4), np.full((4, 6), level, ">u2").tobytes())


def palette(transparent: int | None) -> Image.Image:
    image = Image.new("P", (6, 4), 0)
    image.putpalette([10, 20, 30, 200, 100, 50])
    if transparent is not None:
        image.info["transparency"] = transparent
    return image


@pytest.mark.parametrize(
    ("image", "fmt", "rgb"),
    [
        (uniform("I;16", 128 * 257), "PNG", (128, 128, 128)),  # 16-bit grey PNG
        (uniform("I;16", 1000), "PNG", (4, 4, 4)),  # 1000 / 257 = 3.9
        (sixteen_bit_big_endian(200 * 257), "TIFF", (200, 200, 200)),
        (uniform("I", 60 * 257), "TIFF", (60, 60, 60)),  # 32-bit integer holding 16-bit levels
        (uniform("F", 0.25), "TIFF", (64, 64, 64)),
        (uniform("1", 1), "PNG", (255, 255, 255)),
        (uniform("L", 77), "PNG", (77, 77, 77)),
        (palette(None), "GIF", (10, 20, 30)),
        (palette(0), "PNG", (255, 255, 255)),  # the transparent index, on white
        (uniform("LA", (100, 255)), "PNG", (100, 100, 100)),
        (uniform("LA", (100, 128)), "PNG", (177, 177, 177)),  # half-transparent on white
        (uniform("RGBA", (10, 20, 30, 0)), "PNG", (255, 255, 255)),
        (uniform("RGBA", (10, 20, 30, 255)), "PNG", (10, 20, 30)),
        (uniform("CMYK", (0, 255, 255, 0)), "TIFF", (255, 0, 0)),
    ],
)
def test_every_pixel_mode_decodes_to_the_colour_a_viewer_shows(
    image: Image.Image, fmt: str, rgb: tuple[int, int, int]
) -> None:
    data = encode(image, fmt)
    assert Image.open(io.BytesIO(data)).mode == image.mode  # the file keeps the mode under test
    decoded = decode_image(data)
    assert decoded.mode == "RGB"
    assert np.unique(np.asarray(decoded).reshape(-1, 3), axis=0).tolist() == [list(rgb)]


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (uniform("I", 70_000), "mode I pixels outside 0..65535"),
        (uniform("I", -1), "mode I pixels outside 0..65535"),
        (uniform("F", 2.0), "float pixels outside"),
        (uniform("F", float("nan")), "float pixels outside"),
    ],
)
def test_pixels_without_a_known_scale_are_refused(image: Image.Image, reason: str) -> None:
    with pytest.raises(ImageError, match=f"scan.tif: {reason}"):
        decode_image(encode(image, "TIFF"), name="scan.tif")
