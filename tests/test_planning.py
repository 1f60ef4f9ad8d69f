"""Pair and tile planning: counts, determinism, golden isolation, split stability, tiling."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from common.errors import UserError
from common.planning import (
    Pair,
    Tile,
    assign_split,
    make_tiles,
    plan_grid,
    plan_recipe,
    sample_combinations,
    tile_id,
    tile_shape_for_memory,
)


def urls(kind: str, n: int) -> list[str]:
    return [f"s3://data/{kind}/{i:04d}.jpg" for i in range(n)]


CONTENTS, FACES, STYLES = urls("content", 60), urls("face", 10), urls("style", 40)
GOLDEN_C, GOLDEN_S = urls("golden-content", 7), urls("golden-style", 6)


def test_grid_pairs_every_content_with_every_style() -> None:
    pairs = plan_grid(CONTENTS[:5], STYLES[:3], seed=1)
    assert len(pairs) == 15
    assert {(p.content, p.style) for p in pairs} == {
        (c, s) for c in CONTENTS[:5] for s in STYLES[:3]
    }


def test_grid_ignores_repeats_and_needs_both_sides() -> None:
    assert len(plan_grid(CONTENTS[:2] * 3, STYLES[:2])) == 4
    with pytest.raises(UserError, match="grid needs"):
        plan_grid([], STYLES)


def test_recipe_combination_draws_the_configured_counts() -> None:
    combos = sample_combinations(CONTENTS, FACES, STYLES, combinations=5, seed=3)
    assert len(combos) == 5
    for contents, styles in combos:
        assert len(set(contents)) == 12 and len(set(styles)) == 8
        assert sum(c in FACES for c in contents) == 2
        assert sum(c in CONTENTS for c in contents) == 10
        assert set(styles) <= set(STYLES)
    custom = sample_combinations(CONTENTS, FACES, STYLES, 1, n_contents=3, n_faces=0, n_styles=2)
    assert [len(custom[0][0]), len(custom[0][1])] == [3, 2]


def test_one_recipe_combination_is_96_pairs() -> None:
    assert len(plan_recipe(CONTENTS, FACES, STYLES, combinations=1, seed=0)[0]) == 96


def test_recipe_is_deterministic_per_seed_and_listing_order() -> None:
    shuffled = [*CONTENTS]
    random.Random(0).shuffle(shuffled)
    first = plan_recipe(CONTENTS, FACES, STYLES, combinations=4, seed=7)
    assert plan_recipe(shuffled, FACES[::-1], STYLES, combinations=4, seed=7) == first
    assert plan_recipe(CONTENTS, FACES, STYLES, combinations=4, seed=8) != first


def test_recipe_keeps_a_pair_drawn_twice_once() -> None:
    # Tiny pools force repeated draws: all 3 x 2 pairs, each once.
    pairs, _ = plan_recipe(
        urls("c", 2), urls("f", 1), urls("s", 2), 6, n_contents=2, n_faces=1, n_styles=2
    )
    assert len(pairs) == 6 == len({(p.content, p.style) for p in pairs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"contents": urls("c", 9)}, "10 content images"),
        ({"faces": urls("f", 1)}, "2 face images"),
        ({"styles": urls("s", 7)}, "8 style images"),
        ({"combinations": 0}, "combinations"),
        ({"faces": [CONTENTS[0], FACES[0]]}, CONTENTS[0]),
    ],
)
def test_recipe_rejects_bad_inputs(kwargs: dict, message: str) -> None:
    args = {"contents": CONTENTS, "faces": FACES, "styles": STYLES, "combinations": 2} | kwargs
    with pytest.raises(UserError, match=message):
        plan_recipe(**args)


def test_golden_pairs_are_golden_and_never_train_or_val() -> None:
    pairs, _ = plan_recipe(
        CONTENTS, FACES, STYLES, 10, golden_contents=GOLDEN_C, golden_styles=GOLDEN_S
    )
    golden = {(p.content, p.style) for p in pairs if p.split == "golden"}
    assert golden == {(c, s) for c in GOLDEN_C for s in GOLDEN_S}
    held_out = set(GOLDEN_C + GOLDEN_S)
    for p in pairs:
        if p.split != "golden":
            assert p.content not in held_out and p.style not in held_out


@pytest.mark.parametrize("leak", [GOLDEN_C[2], GOLDEN_S[0]])
def test_golden_image_among_training_inputs_is_a_leak(leak: str) -> None:
    with pytest.raises(UserError, match=rf"{re.escape(leak)}.*\(a leak\)"):
        plan_grid([*CONTENTS, leak], STYLES, golden_contents=GOLDEN_C, golden_styles=GOLDEN_S)
    with pytest.raises(UserError, match=re.escape(leak)):
        plan_recipe(
            CONTENTS, FACES, [*STYLES, leak], 1, golden_contents=GOLDEN_C, golden_styles=GOLDEN_S
        )


def test_golden_set_needs_both_sides() -> None:
    with pytest.raises(UserError, match="golden set"):
        plan_grid(CONTENTS, STYLES, golden_contents=GOLDEN_C)


def test_split_ratio_is_close_to_the_papers_and_stable_under_reordering() -> None:
    contents, styles = urls("c", 100), urls("s", 87)  # 8,700 pairs, as in the paper
    pairs = plan_grid(contents, styles, seed=5)
    val = sum(p.split == "val" for p in pairs)
    assert abs(val - 900) < 100  # binomial std is ~28
    reordered = plan_grid(contents[::-1], random.Random(1).sample(styles, len(styles)), seed=5)
    assert sorted(pairs, key=str) == sorted(reordered, key=str)
    other_seed = plan_grid(contents, styles, seed=6)
    assert {p for p in pairs if p.split == "val"} != {p for p in other_seed if p.split == "val"}


def test_split_depends_only_on_the_pair_and_seed() -> None:
    small = {(p.content, p.style): p.split for p in plan_grid(CONTENTS[:10], STYLES[:10])}
    large = {(p.content, p.style): p.split for p in plan_grid(CONTENTS, STYLES)}
    assert all(large[key] == split for key, split in small.items())
    assert assign_split("a", "b", 0.0, 0) == "train"
    assert assign_split("a", "b", 0.999999, 0) == "val"
    with pytest.raises(UserError, match="fraction"):
        plan_grid(CONTENTS, STYLES, val_fraction=1.0)


def covered(tiles: list[Tile]) -> Counter:
    return Counter(pair for tile in tiles for pair in tile.pairs())


def test_tiles_cover_every_grid_pair_exactly_once_in_full_blocks() -> None:
    pairs = plan_grid(CONTENTS[:25], STYLES[:17], golden_contents=GOLDEN_C, golden_styles=GOLDEN_S)
    tiles = make_tiles(pairs, max_contents=12, max_styles=8)
    assert covered(tiles) == Counter(pairs)
    assert all(len(t.contents) <= 12 and len(t.styles) <= 8 for t in tiles)
    # 25 contents -> 9+8+8 and 17 styles -> 6+6+5: 9 training tiles, plus 1 golden 7 x 6 tile.
    assert len(tiles) == 10
    golden = [t for t in tiles if t.contents == tuple(GOLDEN_C)]
    assert [len(t) for t in golden] == [42]


def test_each_recipe_combination_becomes_one_tile() -> None:
    # Large pools: these three combinations share no image, so each is one whole 12 x 8 tile.
    pools = urls("c", 1000), urls("f", 100), urls("s", 1000)
    pairs, combos = plan_recipe(*pools, combinations=3, seed=2)
    tiles = make_tiles(pairs)
    assert sorted((set(t.contents), set(t.styles)) for t in tiles) == sorted(
        (set(contents), set(styles)) for contents, styles in combos
    )


def test_tiles_cover_an_irregular_pair_set_exactly_once() -> None:
    rng = random.Random(0)
    pairs = list({Pair(c, s, "train") for c in CONTENTS for s in rng.sample(STYLES, 3)})
    tiles = make_tiles(pairs, max_contents=4, max_styles=2)
    assert covered(tiles) == Counter(pairs)
    assert all(len(t.contents) <= 4 and len(t.styles) <= 2 for t in tiles)


def test_tile_ids_are_deterministic_and_distinct() -> None:
    pairs = plan_grid(CONTENTS[:20], STYLES[:20], seed=4)
    tiles = make_tiles(pairs, 6, 6)
    again = make_tiles(random.Random(3).sample(pairs, len(pairs)), 6, 6)
    assert tiles == again
    assert len({t.tile_id for t in tiles}) == len(tiles)
    assert tiles[0].tile_id == tile_id(reversed(tiles[0].pairs()))
    assert tile_id([Pair("a", "b", "train")]) != tile_id([Pair("b", "a", "train")])
    assert tile_id([Pair("a", "b", "train")]) != tile_id([Pair("a", "b", "val")])


def test_make_tiles_rejects_a_pair_in_two_splits() -> None:
    with pytest.raises(ValueError, match="two splits"):
        make_tiles([Pair("a", "b", "train"), Pair("a", "b", "val")])


def test_tile_splits_table_must_match_its_shape() -> None:
    with pytest.raises(ValueError, match="contents x styles"):
        Tile("t", ("a", "b"), ("s",), (("train",),))
    with pytest.raises(ValueError, match="split"):
        Pair("a", "b", "test")


@pytest.mark.parametrize(
    ("free", "q", "kv", "expected"),
    [
        (100, 1, 2, (12, 8)),  # everything fits: 12 + 16 = 28
        (28, 1, 2, (12, 8)),  # exactly fits
        # n_c + 2 n_s <= 10: (6, 2) and (4, 3) both give 12 pairs; (4, 3) inverts less per pair
        (10, 1, 2, (4, 3)),
        (3, 1, 2, (1, 1)),  # only 1 x 1 fits
        (2, 1, 2, (1, 1)),  # nothing fits: the caller offloads
        (0, 1, 2, (1, 1)),
        (20, 2, 1, (6, 8)),  # 2 n_c + n_s <= 20: 6 x 8 uses exactly 20
        (13, 1, 1, (7, 6)),  # 7 x 6 and 6 x 7 tie on pairs and bytes: more contents wins
    ],
)
def test_tile_shape_for_memory(free: int, q: int, kv: int, expected: tuple[int, int]) -> None:
    assert tile_shape_for_memory(free, q, kv) == expected


def test_tile_shape_for_memory_at_paper_scale() -> None:
    gb = 10**9
    q, kv = int(0.58 * gb), int(1.16 * gb)  # fp16 at 512 px (SPEC section 3)
    assert tile_shape_for_memory(17 * gb, q, kv) == (12, 8)  # 16.24 GB
    # n_c / 2 + n_s <= 6.9 (in units of kv): best per n_s is 11x1, 9x2, 7x3, 5x4, 3x5, 1x6;
    # 5 x 4 has the fewest inversions per pair (1/5 + 1/4).
    assert tile_shape_for_memory(8 * gb, q, kv) == (5, 4)
    assert tile_shape_for_memory(8 * gb, q, kv, max_contents=4, max_styles=2) == (4, 2)


def test_recipe_combinations_stay_whole_tiles_when_images_repeat() -> None:
    """Small pools repeat images across combinations; tiling by combination keeps ~one tile per
    combination (few inversions per pair) and still covers every pair exactly once."""
    contents, faces, styles = urls("content", 300), urls("face", 50), urls("style", 300)
    pairs, drawn = plan_recipe(contents, faces, styles, combinations=90, seed=1)
    tiles = make_tiles(pairs, 12, 8, blocks=drawn)
    covered = [(p.content, p.style, p.split) for t in tiles for p in t.pairs()]
    assert sorted(covered) == sorted((p.content, p.style, p.split) for p in pairs)
    assert len(tiles) <= 90
    inversions = sum(len(t.contents) + len(t.styles) for t in tiles) / len(pairs)
    by_style_set = make_tiles(pairs, 12, 8)
    assert inversions < 0.6 * sum(len(t.contents) + len(t.styles) for t in by_style_set) / len(
        pairs
    )
    partial = [t for t in tiles if len(t) < len(t.contents) * len(t.styles)]
    assert partial, "repeated pairs are owned by their first combination only"
    assert all(len(t.pairs()) == len(t) for t in partial)


def test_split_is_per_pair_not_per_content_or_style() -> None:
    """The split hashes the (content, style) pair: over a 30 x 30 grid at the default fraction
    (~10% val), some content has pairs in both splits across styles and some style has pairs
    in both splits across contents. A split hashed on the content alone (or the style alone)
    would give every image one split. A pair keeps its split when inputs are added or reordered.
    """
    contents, styles = urls("c", 30), urls("s", 30)
    pairs = plan_grid(contents, styles, seed=2)
    splits_of_content: dict[str, set[str]] = {c: set() for c in contents}
    splits_of_style: dict[str, set[str]] = {s: set() for s in styles}
    for p in pairs:
        splits_of_content[p.content].add(p.split)
        splits_of_style[p.style].add(p.split)
    assert any(s == {"train", "val"} for s in splits_of_content.values())
    assert any(s == {"train", "val"} for s in splits_of_style.values())
    before = {(p.content, p.style): p.split for p in pairs}
    grown = plan_grid(
        [*urls("new-c", 5), *contents[::-1]], [*styles[::-1], *urls("new-s", 5)], seed=2
    )
    after = {(p.content, p.style): p.split for p in grown}
    assert all(after[pair] == split for pair, split in before.items())
