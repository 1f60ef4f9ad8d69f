"""Training input rate: decoded samples per second on one CPU core, PNGs vs the decoded cache.

    python -m benchmarks.training_input --out benchmarks/results/training_input_cpu.json

Builds a small run of 512 px PNG triples, then reads every training sample of it (random crop,
flip, float conversion: what a DataLoader process does) with one thread in one process, once
decoding the PNGs and once from a warmed `--decoded-cache`. The two ways alternate, pass after
pass, so both see the same machine load, and the best pass of each counts, in samples per
wall second and per CPU second of the process (cores per GPU come from the latter). Synthetic
inputs are already 512 px squares: real content and style images also need a LANCZOS resize on
the PNG path, so its figure is an upper bound.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.machine import describe, report
from benchmarks.synthetic_run import write_synthetic_run
from student.dataset import TripleDataset, read_splits
from student.decoded_cache import DecodedCache


def samples_per_s(dataset: TripleDataset) -> tuple[float, float]:
    """Samples per wall second and per CPU second (this process) of one pass over `dataset`;
    a busy machine lowers the first far more than the second."""
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(len(dataset)):
        dataset[index]
    n = len(dataset)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=512, help="teacher target side")
    parser.add_argument("--crop", type=int, default=256, help="training crop (--crop-size)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes of each way")
    parser.add_argument(
        "--gpu-images-per-s",
        type=float,
        default=279.0,
        help="rate one GPU trains at (STTR, l1, batch 32 x 256 px on an H200: student_h200.json)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as folder:
        run = write_synthetic_run(Path(folder), n_content=6, n_style=4, size=args.resolution)
        lines = read_splits(run).train
        ways = {
            "png_decode": TripleDataset(run, lines, args.crop, train=True),
            "decoded_cache": TripleDataset(
                run, lines, args.crop, train=True, cache=DecodedCache(Path(folder) / "cache")
            ),
        }
        for dataset in ways.values():  # warm-up; fills the cache
            samples_per_s(dataset)
        best = {name: (0.0, 0.0) for name in ways}
        for epoch in range(1, args.passes + 1):
            for name, dataset in ways.items():
                dataset.set_epoch(epoch)
                wall, cpu = samples_per_s(dataset)
                best[name] = (max(best[name][0], wall), max(best[name][1], cpu))
    result = {
        "benchmark": "training_input",
        **describe(torch.device("cpu")),
        "method": f"one process, one thread; best of {args.passes} passes per way after a "
        "warm-up pass, the ways alternating",
        "samples": len(lines),
        "resolution": args.resolution,
        "crop": args.crop,
        "gpu_images_per_s": args.gpu_images_per_s,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **{
            name: {
                "samples_per_wall_s": wall,
                "samples_per_cpu_s": cpu,
                "cores_per_gpu": math.ceil(args.gpu_images_per_s / cpu),
            }
            for name, (wall, cpu) in best.items()
        },
        "cache_over_png_cpu": best["decoded_cache"][1] / best["png_decode"][1],
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
