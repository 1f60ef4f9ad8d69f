"""Teacher speed and memory: tiled vs naive StyleID, and reduced precision vs float32.

CPU, tiny model (runs anywhere):
    python -m benchmarks.teacher_engine --model tiny --device cpu --resolution 128 --tile 4x4
GPU, full SD 1.5 architecture with random weights (where no weights can be downloaded):
    python -m benchmarks.teacher_engine --model sd15-random --device cuda --dtype float16 \
        --resolution 512 --tile 12x8 --naive-pairs 2
Both paths run in one process on the same inputs; results go to benchmarks/results/ as JSON.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from benchmarks.machine import describe, report
from teacher_workers.models import load_teacher, parse_dtype
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.engine import StyleIDEngine


def timed(fn, device: torch.device) -> tuple[torch.Tensor, float, int]:
    """Result, wall seconds and peak GPU bytes (0 on CPU) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return out, time.perf_counter() - start, peak


def images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images (low-frequency noise upsampled), like photos more than white noise."""
    low = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(low, size=size, mode="bicubic").clamp(0, 1)


def engine_parser(doc: str | None, tile: str, batch_size: int) -> argparse.ArgumentParser:
    """The flags every teacher benchmark takes: model, device, dtype, size, tile and batch."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--tile", default=tile, help="contents x styles")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    return parser


def main() -> None:
    parser = engine_parser(__doc__, tile="4x4", batch_size=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--naive-pairs",
        type=int,
        default=0,
        help="time the naive path on this many pairs (0 = the whole tile)",
    )
    parser.add_argument(
        "--compare-dtype",
        default=None,
        help="also run one pair in float32 and report the difference",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    n_c, n_s = (int(x) for x in args.tile.split("x"))
    teacher = load_teacher(args.model, parse_dtype(args.dtype), device)
    config = StyleIDConfig(steps=args.steps, resolution=args.resolution, batch_size=args.batch_size)
    engine = StyleIDEngine(teacher, config)
    contents, styles = images(n_c, args.resolution, 0), images(n_s, args.resolution, 1)
    engine.stylize_tile(contents[:1], styles[:1])  # warm-up: kernels, allocator, caches

    tiled, tiled_s, tiled_peak = timed(lambda: engine.stylize_tile(contents, styles), device)
    # the whole tile, or its first --naive-pairs contents with the first style (slow on SD 1.5)
    naive_c, naive_s_count = (n_c, n_s) if not args.naive_pairs else (min(n_c, args.naive_pairs), 1)
    naive_pairs = naive_c * naive_s_count
    naive, naive_s, naive_peak = timed(
        lambda: engine.stylize_naive(contents[:naive_c], styles[:naive_s_count]), device
    )
    pairs = n_c * n_s
    result = {
        "benchmark": "teacher_engine",
        **describe(device),
        "model": args.model,
        "dtype": args.dtype,
        "resolution": args.resolution,
        "steps": args.steps,
        "tile": [n_c, n_s],
        "batch_size": args.batch_size,
        "tiled": {
            "pairs": pairs,
            "seconds": tiled_s,
            "pairs_per_s": pairs / tiled_s,
            "seconds_per_pair": tiled_s / pairs,
            "peak_gpu_bytes": tiled_peak,
        },
        "naive": {
            "pairs": naive_pairs,
            "seconds": naive_s,
            "pairs_per_s": naive_pairs / naive_s,
            "seconds_per_pair": naive_s / naive_pairs,
            "peak_gpu_bytes": naive_peak,
        },
        "max_abs_diff_tiled_vs_naive": float((tiled[:naive_s_count, :naive_c] - naive).abs().max()),
    }
    speedup = result["tiled"]["pairs_per_s"] / result["naive"]["pairs_per_s"]
    result["speedup_tiled_over_naive"] = speedup
    if args.compare_dtype:
        reference = StyleIDEngine(load_teacher(args.model, torch.float32, device), config)
        low = tiled[0, 0].float().cpu()
        full = reference.stylize_tile(contents[:1], styles[:1])[0, 0].cpu()
        mse = float(((low - full) ** 2).mean())
        result["vs_float32"] = {
            "dtype": args.dtype,
            "max_abs": float((low - full).abs().max()),
            "mean_abs": float((low - full).abs().mean()),
            "psnr_db": 10 * math.log10(1 / max(mse, 1e-12)),
        }
    report(result, args.out)


if __name__ == "__main__":
    main()
