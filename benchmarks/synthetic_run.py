"""A tiny generated run in the SPEC section 4 layout, so student benchmarks and tests need no
teacher (it lives here, not in tests/, because benchmarks import no test module).

Inputs are small random PNGs (not square, so the centre crop matters) under `<root>/inputs/`;
each target is a fixed, learnable function of its content and style (a blend of the content
with the style's mean colour), so a student trained on them must lower its loss.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.ids import content_id, sha256_hex
from common.images import load_square, png_bytes
from common.manifest import ManifestLine, manifest_key, target_key, write_lines
from common.storage import Storage


def smooth_image(rng: np.random.Generator, width: int, height: int) -> bytes:
    """PNG bytes of a smooth random RGB image: coarse noise upscaled, so crops differ."""
    coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def teacher_stand_in(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """What the generated targets hold: 70% content, 30% the style's mean colour."""
    return 0.7 * content + 0.3 * style.mean(dim=(1, 2), keepdim=True)


def split_of(content_index: int, style_index: int, n_content: int, n_style: int) -> str:
    """The last content is golden, the last style (with other contents) is val, the rest train."""
    if content_index == n_content - 1:
        return "golden"
    return "val" if style_index == n_style - 1 else "train"


def write_inputs(folder: Path, prefix: str, count: int, size: int, seed: int) -> list[Path]:
    """`count` generated PNGs, slightly wider than tall, written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"{prefix}-{index}.png"
        path.write_bytes(smooth_image(rng, size + 16, size))
        paths.append(path)
    return paths


def write_synthetic_run(
    root: Path,
    n_content: int = 4,
    n_style: int = 3,
    size: int = 64,
    teacher_hash: str = "t0",
    storage: Storage | None = None,
) -> Storage:
    """Write inputs under `root/inputs`, and targets and one manifest part per content under
    `storage` (default: `root` itself); return that storage."""
    storage = storage or Storage(str(root))
    contents = write_inputs(root / "inputs" / "content", "content", n_content, size, seed=1)
    styles = write_inputs(root / "inputs" / "style", "style", n_style, size, seed=2)
    for c_index, content_path in enumerate(contents):
        content_bytes = content_path.read_bytes()
        content = load_square(content_bytes, size)
        lines = []
        for s_index, style_path in enumerate(styles):
            style_bytes = style_path.read_bytes()
            target = png_bytes(teacher_stand_in(content, load_square(style_bytes, size)))
            key = target_key(teacher_hash, content_id(style_bytes), content_id(content_bytes))
            storage.write_bytes(key, target)
            lines.append(
                ManifestLine(
                    content=str(content_path),
                    style=str(style_path),
                    content_id=content_id(content_bytes),
                    style_id=content_id(style_bytes),
                    target=key,
                    split=split_of(c_index, s_index, n_content, n_style),
                    teacher_hash=teacher_hash,
                    sha256=sha256_hex(target),
                    seconds=0.0,
                )
            )
        write_lines(storage, manifest_key(teacher_hash, f"{c_index:04d}"), lines)
    return storage
