"""Tile size from a worker's GPU memory on SD 1.5's real shapes (meta device: no weights),
against feature sizes and a memory rule worked out by hand below, not taken from the product."""

import pytest

from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.sizing import auto_tile

GB = 2**30

# Stored features per image, SD 1.5 at 512 px in float16 (2 bytes per value). The engine keeps
# them for the 49 sampling timesteps only (961, 941, ..., 1: the inversion's t=981 is never
# sampled). Injected layers: attn1 of up_blocks.2 and up_blocks.3, attentions 0, 1, 2.
# The latent is 512/8 = 64 wide; up_blocks.2 runs at half that (32x32 = 1,024 tokens, 640
# channels), up_blocks.3 at full size (64x64 = 4,096 tokens, 320 channels). Per timestep, one
# kind of projection: 3 * 1,024 * 640 + 3 * 4,096 * 320 = 1,966,080 + 3,932,160 = 5,898,240.
#   content Q:    49 * 5,898,240 * 2 bytes = 578,027,520 bytes   (~0.58 GB, SPEC section 3)
#   style K + V:  2 * 578,027,520          = 1,156,055,040 bytes (~1.16 GB)
Q_BYTES = 578_027_520
KV_BYTES = 1_156_055_040

# The budget rule: a worker holds SD 1.5's UNet (859,520,964 parameters) and VAE (83,653,863)
# in float16: 943,174,827 * 2 = 1,886,349,654 bytes (the text encoder runs once, for "").
# Half of the memory the weights leave is for stored features; the other half is for the UNet
# and VAE activations of a batch.
WEIGHT_BYTES = 1_886_349_654


def feature_budget(gpu_bytes: float) -> float:
    """Bytes of stored features a GPU of `gpu_bytes` may hold."""
    return 0.5 * (gpu_bytes - WEIGHT_BYTES)


def sd15(**styleid: object) -> TeacherOptions:
    return TeacherOptions(model="sd15-random", dtype="float16", styleid=StyleIDConfig(**styleid))


# Since K+V = 2 Q, a tile of n_c x n_s fits when n_c + 2 n_s <= budget / Q. The best tile has
# the fewest inversions per pair (1/n_c + 1/n_s), at most 12 x 8:
#    8 GB: (8 GB - weights) / 2 / Q =  5.80 -> n_c + 2 n_s <=  5 -> 3 x 1 (1.33; 1 x 2 is 1.50)
#   16 GB:                            13.23 -> <= 13 -> 5 x 4 (0.450; 7 x 3 is 0.476, 3 x 5 0.533)
#   24 GB:                            20.66 -> <= 20 -> 8 x 6 (0.292; 10 x 5 is 0.300, 6 x 7 0.310)
#   40 GB:                            35.52 -> <= 35 -> 12 x 8, the cap (12 + 16 = 28)
@pytest.mark.parametrize(
    ("gpu_gb", "tile"), [(8, (3, 1)), (16, (5, 4)), (24, (8, 6)), (40, (12, 8))]
)
def test_auto_tile_is_the_best_tile_that_fits_the_budget(gpu_gb: int, tile: tuple) -> None:
    """Protects the sizing rule (feature sizes, weights reserve and share) end to end."""
    assert auto_tile(sd15(), gpu_gb) == tile
    n_c, n_s = tile
    assert n_c * Q_BYTES + n_s * KV_BYTES <= feature_budget(gpu_gb * GB)


def test_auto_tile_uses_all_of_the_budget_and_no_more() -> None:
    """Exactly the memory an 8 x 6 tile needs gives 8 x 6; 1 kB less gives the next best.
    8 x 6 stores 8 Q + 6 K+V = 20 Q = 11,560,550,400 bytes, so it needs
    2 * 11,560,550,400 + 1,886,349,654 = 25,007,450,454 bytes of GPU memory (23.29 GB).
    A 2% error in any term (49 vs 50 timesteps, the VAE left out of the weights) fails here."""
    needed = 2 * (8 * Q_BYTES + 6 * KV_BYTES) + WEIGHT_BYTES
    assert needed == 25_007_450_454
    assert auto_tile(sd15(), (needed + 1000) / GB) == (8, 6)
    # n_c + 2 n_s <= 19: 7 x 6 (0.310) beats 9 x 5 (0.311) and 5 x 7 (0.343)
    assert auto_tile(sd15(), (needed - 1000) / GB) == (7, 6)


def test_more_memory_gives_bigger_tiles_up_to_the_recipe_combination() -> None:
    sizes = [auto_tile(sd15(), gb) for gb in (8, 16, 24, 80)]
    pairs = [c * s for c, s in sizes]
    assert pairs == sorted(pairs) and pairs[0] < pairs[-1]
    assert sizes[-1] == (12, 8)
    assert auto_tile(TeacherOptions(model="tiny", dtype="float16"), 8) == (12, 8)


def test_smaller_images_fit_more_pairs() -> None:
    """At 256 px every feature map has a quarter of the tokens: Q = 144,506,880 bytes, and
    16 GB holds n_c + 2 n_s <= 52, so the full 12 x 8 combination."""
    assert auto_tile(sd15(resolution=256), 16) == (12, 8)
    big = auto_tile(sd15(), 16)
    assert big[0] * big[1] < 12 * 8
