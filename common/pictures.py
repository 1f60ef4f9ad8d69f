"""The evaluation's pictures, drawn with matplotlib as PNG bytes: a contact sheet of the golden
pairs and the training curves.

Figures are built without pyplot, so they render with matplotlib's Agg canvas whatever the
configured backend, need no display (Ray workers, CI), and leave no global figure state.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

DPI = 100
CURVES_SIZE = (8.0, 6.0)  # inches: 800 x 600 px at DPI
CELL = 2.2  # inches per contact-sheet image
TITLE_CHARS = 24  # a column title's line: about a cell's width in its bold 12 pt
TERM_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:gray")  # not the losses' colours


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def contact_sheet(
    columns: Sequence[str],
    rows: Sequence[tuple[str, Sequence[tuple[Image.Image, str]]]],
    title: str = "",
    notes: Sequence[str] = (),
) -> bytes:
    """One row per item (e.g. a golden pair), one column per role (e.g. content, style,
    teacher, student). `rows`: (row label, [(image, caption under it), ...] in column order);
    `notes`: a column's figures (one or two short lines) between its title and its first
    image."""
    figure = Figure(
        figsize=(CELL * len(columns) + 0.6, (CELL + 0.35) * len(rows) + 0.3),
        layout="constrained",
    )
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    if title:
        figure.suptitle(title)
    pad = 6 + 11 * max((note.count("\n") + 1 for note in notes if note), default=0)  # points
    for column, title in enumerate(columns):  # a long one wrapped, not over its neighbours
        wrapped = "\n".join(textwrap.wrap(title, TITLE_CHARS))
        axes[0, column].set_title(wrapped, fontsize=12, fontweight="bold", pad=pad)
    for column, note in enumerate(notes):
        axes[0, column].annotate(
            note,
            xy=(0.5, 1.0),
            xycoords="axes fraction",
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for row, (label, cells) in enumerate(rows):
        axes[row, 0].set_ylabel(label, fontsize=11)
        for column, (image, caption) in enumerate(cells):
            ax = axes[row, column]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(caption, fontsize=8)
    return png(figure)


def training_curves(
    epochs: Sequence[int],
    losses: Mapping[str, Sequence[float]],
    learning_rate: Sequence[float],
    terms: Mapping[str, Sequence[float]] | None = None,
    title: str = "training curves",
) -> bytes:
    """Losses per epoch on top, the learning rate (log scale) at the bottom, on a shared epoch
    axis; with `terms`, the loss's terms between them on a log scale, where a term orders of
    magnitude below the other (a Gram term that does not matter) still shows. Legends sit
    outside the plots so they never hide a line. `title`: the top plot's (which run)."""
    figure = Figure(figsize=CURVES_SIZE, layout="constrained")
    ratios = (2, 1.5, 1) if terms else (2, 1)
    panels = figure.subplots(len(ratios), 1, sharex=True, height_ratios=ratios)
    top, bottom = panels[0], panels[-1]
    if not epochs:
        top.text(0.5, 0.5, "no training metrics found", ha="center", transform=top.transAxes)
    for name, values in losses.items():
        top.plot(epochs, values, marker="o", label=name)
    top.set_ylabel("loss")
    top.set_title(title)
    if terms:
        middle = panels[1]
        for (name, values), colour in zip(terms.items(), TERM_COLOURS, strict=False):
            middle.plot(epochs, values, marker=".", linestyle="--", color=colour, label=name)
        middle.set_ylabel("loss term")
        if min(v for values in terms.values() for v in values) > 0:
            middle.set_yscale("log")
    bottom.plot(epochs, learning_rate, marker="o", color="tab:green", label="learning rate")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("epoch")
    if epochs and min(learning_rate) > 0:
        bottom.set_yscale("log")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    for ax in panels:
        ax.grid(True, which="both", alpha=0.3)
        if epochs:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        else:  # no scale to show
            ax.set_xticks([])
            ax.set_yticks([])
    return png(figure)


def loss_curve(steps: Sequence[int], losses: Sequence[float], title: str) -> bytes:
    """One loss per optimiser step (e.g. learning an LSAST style), on a grid."""
    figure = Figure(figsize=(CURVES_SIZE[0], CURVES_SIZE[1] / 2), layout="constrained")
    ax = figure.subplots()
    ax.plot(steps, losses, marker="o" if len(steps) < 50 else None)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(True, alpha=0.3)
    return png(figure)
