"""The teacher's speed switches side by side: dtype, channels-last and torch.compile of the UNet.

    python -m benchmarks.teacher_switches --model sd15-random --device cuda --resolution 512 \
        --out benchmarks/results/teacher_switches_<gpu>.json

One process, one set of weights (loaded once in float32, copied per variant), the same tile for
every variant: each variant first stylizes the tile once (kernel selection, and for `compile` the
compilation, timed as `first_tile_seconds`), then `--repeats` more times; the best counts. Each
variant's tile is compared with the float32 variant's (PSNR in dB over images in [0, 1]), so a
speed-up is never quoted without the accuracy it costs. With random weights (`sd15-random`) the
targets are not pictures, but the arithmetic and its cost are SD 1.5's.
"""

from __future__ import annotations

import copy
import math
import time
import traceback

import torch

from benchmarks.machine import describe, report
from benchmarks.teacher_engine import engine_parser, images
from teacher_workers.models import TeacherModel, cast, load_teacher, parse_dtype, tune
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.engine import StyleIDEngine

# name -> (dtype, channels_last, compile)
VARIANTS = {
    "float32": ("float32", False, False),
    "float16": ("float16", False, False),
    "bfloat16": ("bfloat16", False, False),
    "float16-cl": ("float16", True, False),
    "float16-cl-compile": ("float16", True, True),
}


def variant_teacher(base: TeacherModel, dtype: str, channels_last: bool, compile: bool):
    """A copy of the float32 teacher in `dtype` with the switches on (the base stays as it is)."""
    teacher = copy.copy(base)
    teacher.unet = cast(copy.deepcopy(base.unet), None, parse_dtype(dtype))
    teacher.vae = cast(copy.deepcopy(base.vae), None, parse_dtype(dtype))
    teacher.prompt_embeds = base.prompt_embeds.to(parse_dtype(dtype))
    tune(teacher.unet, compile, channels_last)
    return teacher


def synced(device: torch.device, fn):
    """Wall seconds of `fn()`, waiting for the GPU, and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    mse = float(((reference.float() - other.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def run_variant(base, config, contents, styles, switches, repeats) -> tuple[dict, torch.Tensor]:
    """First-tile and best-of-`repeats` seconds of one variant, and its tile."""
    device = base.device
    engine = StyleIDEngine(variant_teacher(base, *switches), config)
    tile, first = synced(device, lambda: engine.stylize_tile(contents, styles))
    best = math.inf
    for _ in range(repeats):
        tile, seconds = synced(device, lambda: engine.stylize_tile(contents, styles))
        best = min(best, seconds)
    pairs = len(contents) * len(styles)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    row = {
        "dtype": switches[0],
        "channels_last": switches[1],
        "compile": switches[2],
        "first_tile_seconds": first,
        "tile_seconds": best,
        "seconds_per_pair": best / pairs,
        "peak_gpu_bytes": peak,
    }
    return row, tile.cpu()


def main() -> None:
    parser = engine_parser(__doc__, tile="2x2", batch_size=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="timed tiles after the first")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if "float32" not in args.variants:
        parser.error("--variants must include float32, the reference")
    device = torch.device(args.device)
    base = load_teacher(args.model, torch.float32, device)
    config = StyleIDConfig(steps=args.steps, resolution=args.resolution, batch_size=args.batch_size)
    n_c, n_s = (int(x) for x in args.tile.split("x"))
    contents = images(n_c, args.resolution, 0).to(device)
    styles = images(n_s, args.resolution, 1).to(device)
    rows, tiles = {}, {}
    for name in args.variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            rows[name], tiles[name] = run_variant(
                base, config, contents, styles, VARIANTS[name], args.repeats
            )
        except Exception as exc:  # a failing switch is a result too; the others still run
            rows[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            traceback.print_exc()
        print(name, rows[name], flush=True)
    reference = rows["float32"].get("tile_seconds")
    for name, row in rows.items():
        if name in tiles and name != "float32" and "float32" in tiles:
            row["psnr_vs_float32_db"] = psnr(tiles["float32"], tiles[name])
        if reference and "tile_seconds" in row:
            row["speedup_vs_float32"] = reference / row["tile_seconds"]
    result = {
        "benchmark": "teacher_switches",
        **describe(device),
        "model": args.model,
        "resolution": args.resolution,
        "steps": args.steps,
        "tile": [n_c, n_s],
        "batch_size": args.batch_size,
        "method": f"one set of weights copied per variant; first tile untimed for the best, then "
        f"best of {args.repeats} tiles; PSNR of each variant's tile against float32's",
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "variants": rows,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
