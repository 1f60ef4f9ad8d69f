"""Tile wall time over engine time, serial vs overlapped, on storage with a fixed latency.

    python -m benchmarks.tile_pipeline [--latencies-ms 0 20 50] [--tile 4x4] [--tiles 4]

Tiles go through the real `TileRunner` (what each actor call runs) without Ray: serially (one
tile at a time, every read, check and write one after another: the pipeline before overlap),
and overlapped (`TILES_IN_FLIGHT` tiles at once from threads, as Ray Data calls the actor, with
the I/O pool). Inputs and outputs live on a local folder behind `LatencyFileSystem`, which adds
a fixed delay to every request, as a far object store does. The engine is a stand-in that takes
a known time per pair without using the CPU, as a GPU does; PNG encoding and image decoding are
the real ones. Both pipelines run in the same process, on the same inputs, for each latency.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fsspec
import torch
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from benchmarks.machine import describe, report
from benchmarks.teacher_engine import images
from common.planning import Tile, make_tiles, plan_grid
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.tile_runner import IO_THREADS, TILES_IN_FLIGHT, TileRunner


class LatencyFileSystem(AbstractFileSystem):
    """Local files at `latency://` paths, each request `delay_s` late (the wait releases the GIL,
    like a network round trip); writes are one PUT, as on S3."""

    protocol = "latency"

    def __init__(self, delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s
        self.local = LocalFileSystem()

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kw: Any):
        time.sleep(self.delay_s)
        return self.local.cat_file(self._strip_protocol(path), start, end)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        time.sleep(self.delay_s)
        path = self._strip_protocol(path)
        self.local.makedirs(posixpath.dirname(path), exist_ok=True)
        self.local.pipe_file(path, value)

    def info(self, path: str, **kw: Any) -> dict[str, Any]:
        time.sleep(self.delay_s)
        return self.local.info(self._strip_protocol(path))

    def ls(self, path: str, detail: bool = True, **kw: Any) -> list:
        time.sleep(self.delay_s)
        return self.local.ls(self._strip_protocol(path), detail=detail)


class FixedTimeEngine:
    """Stands in for the StyleID engine on a GPU: `seconds_per_pair` per pair, spent waiting
    (no CPU, GIL released), and each target a blend of its content and style. `busy` adds up
    the engine's own time, the denominator of the benchmark's ratio."""

    def __init__(self, seconds_per_pair: float) -> None:
        self.seconds_per_pair = seconds_per_pair
        self.busy = 0.0

    def stylize_pairs(
        self, contents: torch.Tensor, styles: torch.Tensor, pairs: list[tuple[int, int]]
    ) -> torch.Tensor:
        start = time.perf_counter()
        time.sleep(self.seconds_per_pair * len(pairs))
        out = torch.stack([(contents[c] + styles[s]) / 2 for c, s in pairs])
        self.busy += time.perf_counter() - start
        return out


def write_images(folder: Path, prefix: str, n: int, size: int, seed: int) -> list[str]:
    """Photo-like JPEGs a little larger than the resolution (so they are cropped and resized)."""
    folder.mkdir(parents=True)
    urls = []
    for i, pixels in enumerate(images(n, size + size // 4, seed)):
        path = folder / f"{prefix}{i}.jpg"
        array = (pixels[:, :size].permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(array).save(path, quality=90)
        urls.append(f"latency://{path}")
    return urls


def run_pipeline(
    tiles: list[Tile],
    root: str,
    options: TeacherOptions,
    delay_s: float,
    seconds_per_pair: float,
    io_threads: int,
) -> dict[str, float]:
    """Run the tiles into a fresh root, overlapped unless `io_threads` is 1; returns the wall
    time over the engine's own time."""
    runner = TileRunner(options, root, {"delay_s": delay_s}, "bench", io_threads)
    runner.engine = engine = FixedTimeEngine(seconds_per_pair)
    overlapped = io_threads > 1
    start = time.perf_counter()
    if overlapped:
        with ThreadPoolExecutor(TILES_IN_FLIGHT) as actor_threads:
            results = list(actor_threads.map(runner.run, tiles))
    else:
        results = [runner.run(tile) for tile in tiles]
    wall = time.perf_counter() - start
    assert sum(r.written for r in results) == sum(len(t) for t in tiles)
    return {
        "wall_s": wall,
        "engine_s": engine.busy,
        "wall_per_tile_s": wall / len(tiles),
        "wall_over_engine": wall / engine.busy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latencies-ms", type=float, nargs="+", default=[0, 20, 50])
    parser.add_argument("--tile", default="4x4", help="contents x styles")
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seconds-per-pair", type=float, default=0.25)
    parser.add_argument("--io-threads", type=int, default=IO_THREADS)
    parser.add_argument("--out", default="benchmarks/results/tile_pipeline_cpu.json")
    args = parser.parse_args()

    fsspec.register_implementation("latency", LatencyFileSystem, clobber=True)
    n_c, n_s = (int(x) for x in args.tile.split("x"))
    resolution = StyleIDConfig(resolution=args.resolution)
    options = TeacherOptions(model="tiny", device="cpu", styleid=resolution)  # engine replaced
    load_before = os.getloadavg()[0]
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        contents = write_images(Path(folder, "in/c"), "c", n_c * args.tiles, args.resolution, 0)
        styles = write_images(Path(folder, "in/s"), "s", n_s, args.resolution, 1)
        tiles = make_tiles(plan_grid(contents, styles), n_c, n_s)
        for latency_ms in args.latencies_ms:
            row: dict[str, Any] = {"latency_ms_per_request": latency_ms}
            for name, io_threads in (("serial", 1), ("overlapped", args.io_threads)):
                root = f"latency://{folder}/{name}-{latency_ms:g}"
                row[name] = run_pipeline(
                    tiles, root, options, latency_ms / 1000, args.seconds_per_pair, io_threads
                )
            row["speedup"] = row["serial"]["wall_s"] / row["overlapped"]["wall_s"]
            figures.append(row)
    report(
        {
            "benchmark": "tile_pipeline",
            **describe(torch.device("cpu")),
            "load_average_1min": [load_before, os.getloadavg()[0]],  # before, after
            "engine": f"stand-in: {args.seconds_per_pair} s per pair, waiting (as a GPU does)",
            "resolution": args.resolution,
            "tile": [n_c, n_s],
            "tiles": len(tiles),
            "tiles_in_flight": TILES_IN_FLIGHT,
            "io_threads": args.io_threads,
            "results": figures,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
