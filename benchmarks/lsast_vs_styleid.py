"""Per-pair teacher cost: LSAST against StyleID, on the same model, device and images.

CPU, tiny model (a smoke run; its figures say little about a GPU):
    python -m benchmarks.lsast_vs_styleid --model tiny --device cpu --resolution 128 --tile 2x2
GPU, full SD 1.5 architecture with random weights, ControlNet from the UNet's shape:
    python -m benchmarks.lsast_vs_styleid --model sd15-random --device cuda --dtype float16 \
        --resolution 512 --tile 8x4 --out benchmarks/results/lsast_vs_styleid_gpu.json
Both teachers run a whole tile (every content with every style) with their default settings
(StyleID: 50 steps inverted and sampled; LSAST: 35 guided steps of 2 UNet passes plus one
ControlNet pass); results go to benchmarks/results/ as JSON with the device named.
"""

from __future__ import annotations

import torch

from benchmarks.machine import describe, report
from benchmarks.teacher_engine import engine_parser, images, timed
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.control import load_controlnet
from teacher_workers.lsast.engine import LSASTEngine
from teacher_workers.lsast.generator import new_generator
from teacher_workers.models import load_teacher, parse_dtype
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.engine import StyleIDEngine


def main() -> None:
    parser = engine_parser(__doc__, tile="2x2", batch_size=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    device, dtype = torch.device(args.device), parse_dtype(args.dtype)
    n_c, n_s = (int(x) for x in args.tile.split("x"))
    contents, styles = images(n_c, args.resolution, 0), images(n_s, args.resolution, 1)
    pairs = [(c, s) for s in range(n_s) for c in range(n_c)]

    teacher = load_teacher(args.model, dtype, device, text_encoder=True)
    styleid = StyleIDEngine(
        teacher, StyleIDConfig(resolution=args.resolution, batch_size=args.batch_size)
    )
    controlnet = load_controlnet("tiny", teacher.unet, dtype, device)
    lsast = LSASTEngine(
        teacher, controlnet, LSASTConfig(resolution=args.resolution, batch_size=args.batch_size)
    )
    learned = [new_generator(teacher, seed=s).float() for s in range(n_s)]
    styleid.stylize_tile(contents[:1], styles[:1])  # warm-up: kernels, allocator, caches
    lsast.stylize_pairs(contents[:1], learned[:1], [(0, 0)])

    _, styleid_s, styleid_peak = timed(lambda: styleid.stylize_tile(contents, styles), device)
    _, lsast_s, lsast_peak = timed(lambda: lsast.stylize_pairs(contents, learned, pairs), device)
    result = {
        "benchmark": "lsast_vs_styleid",
        **describe(device),
        "model": args.model,
        "dtype": args.dtype,
        "resolution": args.resolution,
        "tile": [n_c, n_s],
        "batch_size": args.batch_size,
        "styleid": {
            "seconds_per_pair": styleid_s / len(pairs),
            "peak_gpu_bytes": styleid_peak,
        },
        "lsast": {"seconds_per_pair": lsast_s / len(pairs), "peak_gpu_bytes": lsast_peak},
        "lsast_over_styleid_cost": lsast_s / styleid_s,
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
