"""The evaluation's pictures, drawn with Pillow alone: a labelled contact sheet and loss curves."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
PAD = 8


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _thumb(image: Image.Image, size: int) -> Image.Image:
    return image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """`text` cut from the left (keeping the file name) to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def contact_sheet(
    contents: Sequence[tuple[str, Image.Image]],
    styles: Sequence[tuple[str, Image.Image]],
    cells: dict[tuple[int, int], dict[str, Image.Image]],
    thumb: int = 128,
) -> Image.Image:
    """Rows: contents; columns: styles. Each cell shows its images (e.g. teacher, student) side
    by side, each labelled; the first row and column show the inputs, labelled by name.

    `cells[(row, column)]` maps a label to an image, in the order they are drawn.
    """
    per_cell = max(len(c) for c in cells.values())
    label_h = 18
    cell_w = per_cell * thumb + (per_cell - 1) * PAD
    width = PAD + thumb + PAD + len(styles) * (cell_w + PAD)
    height = PAD + (thumb + label_h + PAD) * (len(contents) + 1)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(13)

    def place(image: Image.Image, label: str, x: int, y: int) -> None:
        sheet.paste(_thumb(image, thumb), (x, y))
        draw.text((x + 2, y + thumb + 2), _fit(draw, label, font, thumb - 4), fill=INK, font=font)

    for column, (name, style) in enumerate(styles):
        place(style, name, PAD + thumb + PAD + column * (cell_w + PAD), PAD)
    for row, (name, content) in enumerate(contents):
        y = PAD + (row + 1) * (thumb + label_h + PAD)
        place(content, name, PAD, y)
        for column in range(len(styles)):
            x = PAD + thumb + PAD + column * (cell_w + PAD)
            for k, (label, image) in enumerate(cells.get((row, column), {}).items()):
                place(image, label, x + k * (thumb + PAD), y)
    return sheet


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str,
    size: tuple[int, int] = (520, 300),
    log_y: bool = False,
) -> Image.Image:
    """A small line chart of named (x, y) series with axes, ticks at the ends and a legend."""
    width, height = size
    left, right, top, bottom = 64, 16, 28, 40
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(12)
    draw.text((left, 6), title, fill=INK, font=_font(14))
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    if not points:
        draw.text((left, height // 2), "no data", fill=INK, font=font)
        return image
    transform = (lambda v: math.log10(max(v, 1e-12))) if log_y else (lambda v: v)
    xs = [p[0] for p in points]
    ys = [transform(p[1]) for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def at(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = height - bottom - (transform(y) - y0) / (y1 - y0) * (height - top - bottom)
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline=INK)
    for value, y in ((y0, height - bottom), (y1, top)):
        text = f"{10**value:.2e}" if log_y else f"{value:.4g}"
        draw.text((4, y - 7), text, fill=INK, font=font)
    for value, x in ((x0, left), (x1, width - right)):
        draw.text((x - 4, height - bottom + 4), f"{value:g}", fill=INK, font=font)
    draw.text(((width - len(x_label) * 6) // 2, height - 18), x_label, fill=INK, font=font)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    for k, (name, values) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        line = [at(x, y) for x, y in values if math.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for px, py in line:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        legend_x, legend_y = width - right - 120, top + 6 + 14 * k
        draw.rectangle([legend_x, legend_y + 4, legend_x + 12, legend_y + 7], fill=colour)
        draw.text((legend_x + 16, legend_y - 1), name, fill=colour, font=font)
    return image


def stack_vertically(images: Sequence[Image.Image]) -> Image.Image:
    width = max(i.width for i in images)
    sheet = Image.new("RGB", (width, sum(i.height for i in images)), BACKGROUND)
    y = 0
    for image in images:
        sheet.paste(image, (0, y))
        y += image.height
    return sheet
