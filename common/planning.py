"""Which (content, style) pairs a run generates, their splits, and the tiles workers process.

Inputs are image URLs; identity here is by URL (the generate job also compares content hashes).
A tile is a full contents x styles block, so a worker inverts each of its images once and samples
every pair of the block from the stored features (SPEC section 3).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.errors import UserError
from common.ids import config_hash
from common.manifest import SPLITS

# The paper's 8,700 pairs: 7,800 train + 900 validation.
VAL_FRACTION = 900 / 8700
# The paper's recipe draws 10 contents, 2 faces and 8 styles per combination; a tile holds at
# most one combination's block of contents x styles.
RECIPE_CONTENTS, RECIPE_FACES, RECIPE_STYLES = 10, 2, 8
MAX_TILE = (RECIPE_CONTENTS + RECIPE_FACES, RECIPE_STYLES)
Combination = tuple[tuple[str, ...], tuple[str, ...]]  # (contents + faces, styles) drawn together


@dataclass(frozen=True)
class Pair:
    """One content image stylized by one style image, and the split its target belongs to."""

    content: str
    style: str
    split: str

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")


@dataclass(frozen=True)
class Tile:
    """A work unit: every content with every style, each image inverted once per tile.

    `splits[i][j]` is the split of (contents[i], styles[j]), or None when that pair belongs to
    another tile (a recipe pair drawn again by a later combination); `tile_id` names the tile's
    manifest and failure part files.
    """

    tile_id: str
    contents: tuple[str, ...]
    styles: tuple[str, ...]
    splits: tuple[tuple[str | None, ...], ...]

    def __post_init__(self) -> None:
        if not self.contents or not self.styles:
            raise ValueError("a tile needs at least one content and one style")
        if len(self.splits) != len(self.contents) or any(
            len(row) != len(self.styles) for row in self.splits
        ):
            raise ValueError(f"tile {self.tile_id}: splits must be a contents x styles table")
        if bad := {s for row in self.splits for s in row} - {*SPLITS, None}:
            raise ValueError(f"tile {self.tile_id}: unknown splits {sorted(bad)}")
        if not self.pairs():
            raise ValueError(f"tile {self.tile_id} owns no pair")

    def __len__(self) -> int:
        """The pairs this tile owns."""
        return len(self.pairs())

    def pairs(self) -> list[Pair]:
        """The tile's pairs, content-major (the order of `splits`)."""
        return [
            Pair(content, style, split)
            for content, row in zip(self.contents, self.splits, strict=True)
            for style, split in zip(self.styles, row, strict=True)
            if split is not None
        ]


def tile_id(pairs: Iterable[Pair]) -> str:
    """Short hash of a tile's pairs and their splits, independent of order: a re-run of the same
    plan finds the same parts, and a plan with other splits gets new ones."""
    return config_hash({"pairs": sorted([p.content, p.style, p.split] for p in pairs)})


def assign_split(content: str, style: str, val_fraction: float, seed: int) -> str:
    """'val' or 'train' from a hash of the pair and the seed.

    Depends on nothing else, so a pair keeps its split when inputs are reordered or added: a
    model trained on an earlier plan never saw a later plan's validation pairs. The split is per
    pair (an image may appear in both splits with different partners); the golden set is the
    fully held-out one.
    """
    digest = hashlib.sha256(f"{seed}\0{content}\0{style}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def plan_grid(
    contents: Sequence[str],
    styles: Sequence[str],
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    golden_contents: Sequence[str] = (),
    golden_styles: Sequence[str] = (),
) -> list[Pair]:
    """Every content with every style, plus the golden contents x golden styles."""
    contents, styles = _unique(contents), _unique(styles)
    if not contents or not styles:
        raise UserError(f"grid needs contents and styles, got {len(contents)} and {len(styles)}")
    grid = [(c, s) for c in contents for s in styles]
    return _split(grid, [*contents, *styles], val_fraction, seed, golden_contents, golden_styles)


def sample_combinations(
    contents: Sequence[str],
    faces: Sequence[str],
    styles: Sequence[str],
    combinations: int,
    seed: int = 0,
    n_contents: int = RECIPE_CONTENTS,
    n_faces: int = RECIPE_FACES,
    n_styles: int = RECIPE_STYLES,
) -> list[Combination]:
    """The paper's recipe: each combination draws `n_contents` contents, `n_faces` faces and
    `n_styles` styles without replacement; returns (contents + faces, styles) per combination.

    Inputs are de-duplicated and sorted before drawing, so the same URLs and seed give the same
    combinations however they were listed.
    """
    contents, faces, styles = _unique(contents), _unique(faces), _unique(styles)
    if combinations < 1:
        raise UserError(f"combinations must be >= 1, got {combinations}")
    if min(n_contents, n_faces, n_styles) < 0 or n_contents + n_faces < 1 or n_styles < 1:
        raise UserError(
            f"recipe counts must give >= 1 content and style per combination, got "
            f"contents={n_contents} faces={n_faces} styles={n_styles}"
        )
    for what, pool, need in (
        ("content", contents, n_contents),
        ("face", faces, n_faces),
        ("style", styles, n_styles),
    ):
        if len(pool) < need:
            raise UserError(
                f"recipe needs {need} {what} images per combination, only {len(pool)} given"
            )
    if both := sorted(set(contents) & set(faces)):
        raise UserError(f"{both[0]} is listed both as a content and as a face image")
    rng = random.Random(seed)
    return [
        (
            (*rng.sample(contents, n_contents), *rng.sample(faces, n_faces)),
            tuple(rng.sample(styles, n_styles)),
        )
        for _ in range(combinations)
    ]


def plan_recipe(
    contents: Sequence[str],
    faces: Sequence[str],
    styles: Sequence[str],
    combinations: int,
    seed: int = 0,
    n_contents: int = RECIPE_CONTENTS,
    n_faces: int = RECIPE_FACES,
    n_styles: int = RECIPE_STYLES,
    val_fraction: float = VAL_FRACTION,
    golden_contents: Sequence[str] = (),
    golden_styles: Sequence[str] = (),
) -> tuple[list[Pair], list[Combination]]:
    """The pairs of `sample_combinations` (a pair drawn twice is kept once) plus the golden set,
    and the combinations themselves: `make_tiles` cuts its best tiles from them."""
    drawn = sample_combinations(
        contents, faces, styles, combinations, seed, n_contents, n_faces, n_styles
    )
    unique = dict.fromkeys((c, s) for block, chosen in drawn for c in block for s in chosen)
    training = [*contents, *faces, *styles]
    return _split(unique, training, val_fraction, seed, golden_contents, golden_styles), drawn


def make_tiles(
    pairs: Iterable[Pair],
    max_contents: int = MAX_TILE[0],
    max_styles: int = MAX_TILE[1],
    blocks: Sequence[tuple[Sequence[str], Sequence[str]]] = (),
) -> list[Tile]:
    """Cover every pair exactly once with tiles of at most max_contents x max_styles.

    `blocks` (e.g. the recipe's combinations) come first: each is cut into tiles that own its
    pairs not owned by an earlier block. The remaining pairs are grouped by style set: contents
    that pair with exactly the same styles form one block, cut into near-equal full tiles, so
    a grid becomes whole tiles. Tiles are sorted, their ids deterministic.
    """
    split_of: dict[tuple[str, str], str] = {}
    for pair in pairs:
        if split_of.setdefault((pair.content, pair.style), pair.split) != pair.split:
            raise ValueError(f"pair ({pair.content}, {pair.style}) is planned in two splits")
    tiles: list[Tile] = []
    owned: set[tuple[str, str]] = set()
    for contents, styles in [*blocks, *_style_set_blocks(split_of)]:
        for content_chunk in _chunks(sorted(set(contents)), max_contents):
            for style_chunk in _chunks(sorted(set(styles)), max_styles):
                mine = {
                    (c, s)
                    for c in content_chunk
                    for s in style_chunk
                    if (c, s) in split_of and (c, s) not in owned
                }
                if mine:
                    owned |= mine
                    tiles.append(_tile(content_chunk, style_chunk, mine, split_of))
    return sorted(tiles, key=lambda tile: (tile.contents, tile.styles))


def _style_set_blocks(split_of: dict[tuple[str, str], str]) -> list[tuple[list[str], list[str]]]:
    """Contents grouped by the exact set of styles they pair with."""
    styles_of: dict[str, set[str]] = {}
    for content, style in split_of:
        styles_of.setdefault(content, set()).add(style)
    blocks: dict[tuple[str, ...], list[str]] = {}
    for content in sorted(styles_of):
        blocks.setdefault(tuple(sorted(styles_of[content])), []).append(content)
    return [(contents, list(styles)) for styles, contents in blocks.items()]


def _tile(
    contents: tuple[str, ...],
    styles: tuple[str, ...],
    mine: set[tuple[str, str]],
    split_of: dict[tuple[str, str], str],
) -> Tile:
    """A tile of the images that take part in its own pairs."""
    contents = tuple(c for c in contents if any((c, s) in mine for s in styles))
    styles = tuple(s for s in styles if any((c, s) in mine for c in contents))
    splits = tuple(
        tuple(split_of[c, s] if (c, s) in mine else None for s in styles) for c in contents
    )
    return Tile(
        tile_id(Pair(c, s, split_of[c, s]) for c, s in sorted(mine)), contents, styles, splits
    )


def tile_shape_for_memory(
    free_bytes: int,
    q_bytes_per_image: int,
    kv_bytes_per_image: int,
    max_contents: int = MAX_TILE[0],
    max_styles: int = MAX_TILE[1],
) -> tuple[int, int]:
    """(n_contents, n_styles) whose stored features, n_contents*q + n_styles*kv, fit `free_bytes`.

    Among the shapes that fit, the one with the fewest inversions per pair (1/n_c + 1/n_s)
    wins, then more pairs, then more contents: inversion is the cost a tile amortises. When not
    even 1 x 1 fits, 1 x 1 is returned and the caller keeps features in CPU memory instead.
    """
    if q_bytes_per_image <= 0 or kv_bytes_per_image <= 0:
        raise ValueError("feature sizes per image must be positive")
    if max_contents < 1 or max_styles < 1:
        raise ValueError(f"tile limits must be >= 1, got {max_contents} x {max_styles}")
    fitting = [
        (n_c, n_s)
        for n_c in range(1, max_contents + 1)
        for n_s in range(1, max_styles + 1)
        if n_c * q_bytes_per_image + n_s * kv_bytes_per_image <= free_bytes
    ]
    if not fitting:
        return 1, 1
    return min(fitting, key=lambda s: (1 / s[0] + 1 / s[1], -s[0] * s[1], -s[0]))


def _split(
    pairs: Iterable[tuple[str, str]],
    training: Sequence[str],
    val_fraction: float,
    seed: int,
    golden_contents: Sequence[str],
    golden_styles: Sequence[str],
) -> list[Pair]:
    """`pairs` in their train/val splits, then golden contents x golden styles; a golden image
    among the `training` inputs is a leak."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"validation fraction must be in [0, 1), got {val_fraction}")
    contents, styles = _unique(golden_contents), _unique(golden_styles)
    if bool(contents) != bool(styles):
        raise UserError(
            f"golden set needs contents and styles, got {len(contents)} and {len(styles)}"
        )
    if leaked := sorted(set(contents + styles) & set(training)):
        raise UserError(f"golden image {leaked[0]} is also a training input (a leak)")
    return [Pair(c, s, assign_split(c, s, val_fraction, seed)) for c, s in pairs] + [
        Pair(c, s, "golden") for c in contents for s in styles
    ]


def _unique(urls: Sequence[str]) -> list[str]:
    """Sorted distinct URLs: plans do not depend on listing order or repeats."""
    return sorted(set(urls))


def _chunks(items: Sequence[str], limit: int) -> list[tuple[str, ...]]:
    """Split into the fewest chunks of at most `limit`, sizes differing by at most one."""
    count = -(-len(items) // limit)
    size, extra = divmod(len(items), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [tuple(items[bounds[i] : bounds[i + 1]]) for i in range(count)]
