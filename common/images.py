"""Image I/O: bytes -> checked RGB image -> square tensor in [0, 1]; tensors back to PNG."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.functional import center_crop, pil_to_tensor

from common.errors import ImageError

DEFAULT_MAX_PIXELS = 40_000_000
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def decode_image(
    data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode bytes to an RGB image; anything unusable raises `ImageError` naming the input.

    The pixel count is checked from the header, before the pixels are decoded, so a
    decompression bomb costs nothing. EXIF orientation is applied, so camera photos are upright.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"{name}: {width}x{height} has more than {max_pixels} pixels")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit, hit before ours when the header claims a huge size.
        raise ImageError(f"{name}: too many pixels (decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: corrupt image ({exc})") from None
    if width < 1 or height < 1:
        raise ImageError(f"{name}: empty image")
    return _to_rgb(image, name)


def _to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB pixels as a viewer shows the picture, whatever the file's pixel mode.

    Pillow's `convert("RGB")` clips wide pixels to 0..255 (a 16-bit grey becomes white, floats
    in [0, 1] black), so those are scaled here: 16-bit integers (modes I;16*, and I, which
    Pillow uses for 16-bit PNG, PPM and TIFF) by 255/65535, floats (mode F) from [0, 1]. Values
    outside those ranges have no agreed meaning and are refused. Transparent pixels are
    composited on white: their colour channels are undefined (often black), and white is how
    a viewer shows them; opaque pixels are unchanged. Other modes (1, L, P, CMYK, YCbCr, LAB,
    HSV) are Pillow's own conversions; a mode Pillow cannot convert is refused.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        out_of_range = f"{name}: mode {image.mode} pixels outside 0..65535"
        image = _grey8(np.asarray(image) / 65535, out_of_range)
    elif image.mode == "F":
        image = _grey8(np.asarray(image, np.float64), f"{name}: float pixels outside [0, 1]")
    try:
        if image.mode in ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError:
        raise ImageError(f"{name}: pixel mode {image.mode} is not supported") from None


def _grey8(unit: np.ndarray, out_of_range: str) -> Image.Image:
    """Grey levels in [0, 1] as an 8-bit L image; anything else raises `ImageError`."""
    if not np.isfinite(unit).all() or unit.min() < 0 or unit.max() > 1:
        raise ImageError(out_of_range)
    return Image.fromarray(np.rint(unit * 255).astype(np.uint8), "L")


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Largest centred square, resized to size x size with LANCZOS (the paper's preprocessing).

    The crop is torchvision's own `center_crop`, as the reference's `CenterCrop`: it rounds the
    offset (half to even), so an odd margin lands where the reference puts it, not one pixel off.
    """
    side = min(image.size)
    square = center_crop(image, [side, side])
    return square if side == size else square.resize((size, size), Image.Resampling.LANCZOS)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB image -> float32 tensor [3, H, W] in [0, 1]."""
    return pil_to_tensor(image).float().div_(255.0)


def load_square(data: bytes, size: int, name: str = "image") -> torch.Tensor:
    """Bytes -> [3, size, size] tensor in [0, 1], centre-cropped; bad input raises `ImageError`."""
    return to_tensor(center_crop_resize(decode_image(data, name), size))


def load_scaled(
    data: bytes, max_side: int, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Bytes -> [3, H, W] in [0, 1] at the image's aspect ratio, downscaled (LANCZOS) so the
    longer side is at most `max_side` (0: kept); bad input raises `ImageError`."""
    image = decode_image(data, name, max_pixels)
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), resample=Image.Resampling.LANCZOS)
    return to_tensor(image)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """[3, H, W] tensor in [0, 1] (clamped) -> RGB image, rounding to the nearest 8-bit value."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] tensor, got {tuple(tensor.shape)}")
    array = (
        tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    )
    return Image.fromarray(array, "RGB")


def png_bytes(tensor: torch.Tensor) -> bytes:
    """[3, H, W] tensor in [0, 1] -> PNG file bytes."""
    buffer = io.BytesIO()
    to_pil(tensor).save(buffer, format="PNG")
    return buffer.getvalue()
