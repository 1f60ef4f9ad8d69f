"""Draw the bundled sample images: a miniature of the paper's data, made by this project (CC0).

    python samples/generate.py        # rewrites samples/{content,faces,styles,golden}/

Contents are simple landscapes, faces are cartoon faces, styles are textures with their own
palettes; the golden set uses seeds no training image uses. Deterministic per seed.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
ROOT = Path(__file__).parent


def palette(rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    return [tuple(rng.randrange(256) for _ in range(3)) for _ in range(n)]


def landscape(seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    top, bottom = palette(rng, 2)
    for y in range(SIZE):  # sky gradient
        t = y / SIZE
        draw.line(
            [(0, y), (SIZE, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    sun = rng.randrange(30, SIZE - 30)
    draw.ellipse([sun - 22, 30, sun + 22, 74], fill=(255, 230, 120))
    for layer in range(3):  # mountain ridges, darker towards the front
        base = 120 + layer * 35
        points = [(0, SIZE)] + [(x, base - rng.randrange(10, 60)) for x in range(0, SIZE + 32, 32)]
        shade = 160 - layer * 45
        draw.polygon(
            [*points, (SIZE, SIZE)], fill=(shade // 2, shade, shade // 2 + rng.randrange(40))
        )
    for _ in range(rng.randrange(2, 5)):  # houses
        x, w = rng.randrange(0, SIZE - 40), rng.randrange(20, 40)
        y = rng.randrange(190, 220)
        draw.rectangle([x, y, x + w, y + 30], fill=palette(rng, 1)[0])
        draw.polygon([(x - 4, y), (x + w // 2, y - 18), (x + w + 4, y)], fill=(150, 40, 30))
    return image


def face(seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (SIZE, SIZE), palette(rng, 1)[0])
    draw = ImageDraw.Draw(image)
    skin = rng.choice([(241, 194, 125), (198, 134, 66), (141, 85, 36), (255, 219, 172)])
    draw.ellipse([48, 20, 208, 120], fill=palette(rng, 1)[0])  # hair
    draw.ellipse([58, 40, 198, 230], fill=skin)
    for x in (98, 158):
        draw.ellipse([x - 14, 105, x + 14, 125], fill=(255, 255, 255))
        draw.ellipse([x - 6, 109, x + 6, 121], fill=(40, 30, 20))
    draw.polygon([(128, 130), (118, 165), (138, 165)], fill=tuple(int(c * 0.85) for c in skin))
    draw.arc([98, 160, 158, 200], 20, 160, fill=(150, 40, 40), width=5)
    return image


def texture(seed: int) -> Image.Image:
    """One of eight texture families, each with its own seeded palette."""
    rng = random.Random(seed)
    colors = palette(rng, 5)
    image = Image.new("RGB", (SIZE, SIZE), colors[0])
    draw = ImageDraw.Draw(image)
    kind = seed % 8
    if kind == 0:  # diagonal stripes
        for i in range(-SIZE, SIZE, 18):
            draw.line([(i, 0), (i + SIZE, SIZE)], fill=rng.choice(colors), width=9)
    elif kind == 1:  # concentric rings
        for r in range(SIZE, 0, -14):
            draw.ellipse([128 - r, 128 - r, 128 + r, 128 + r], fill=rng.choice(colors))
    elif kind == 2:  # mosaic of nearest seeds (Voronoi)
        seeds = [(rng.randrange(SIZE), rng.randrange(SIZE), rng.choice(colors)) for _ in range(40)]
        small = Image.new("RGB", (64, 64))
        small.putdata(
            [
                min(seeds, key=lambda s: (s[0] / 4 - x) ** 2 + (s[1] / 4 - y) ** 2)[2]
                for y in range(64)
                for x in range(64)
            ]
        )
        image = small.resize((SIZE, SIZE), Image.Resampling.NEAREST)
    elif kind == 3:  # brush strokes
        for _ in range(300):
            x, y, a = rng.randrange(SIZE), rng.randrange(SIZE), rng.random() * math.pi
            draw.line(
                [(x, y), (x + 25 * math.cos(a), y + 25 * math.sin(a))],
                fill=rng.choice(colors),
                width=rng.randrange(3, 8),
            )
    elif kind == 4:  # pointillism
        for _ in range(1500):
            x, y, r = rng.randrange(SIZE), rng.randrange(SIZE), rng.randrange(2, 6)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.choice(colors))
    elif kind == 5:  # waves
        for y0 in range(0, SIZE + 20, 12):
            points = [(x, y0 + 8 * math.sin(x / 15 + y0)) for x in range(0, SIZE + 4, 4)]
            draw.line(points, fill=rng.choice(colors), width=6)
    elif kind == 6:  # colour blocks with black lines
        for _ in range(12):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            draw.rectangle(
                [x, y, x + rng.randrange(30, 120), y + rng.randrange(30, 120)],
                fill=rng.choice(colors),
                outline=(0, 0, 0),
                width=5,
            )
    else:  # checks, softened
        step = 32
        for y in range(0, SIZE, step):
            for x in range(0, SIZE, step):
                draw.rectangle([x, y, x + step, y + step], fill=colors[(x // step + y // step) % 5])
        image = image.filter(ImageFilter.GaussianBlur(3))
    return image


def main() -> None:
    sets = {
        "content": [landscape(seed) for seed in range(10)],
        "faces": [face(100 + seed) for seed in range(2)],
        "styles": [texture(seed) for seed in range(8)],
        "golden/content": [landscape(500), face(600)],
        "golden/styles": [texture(700 + 3), texture(700 + 4)],
    }
    for folder, images in sets.items():
        target = ROOT / folder
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob("*.png"):
            old.unlink()
        for index, image in enumerate(images):
            image.save(target / f"{index:02d}.png", optimize=True)


if __name__ == "__main__":
    main()
