"""Generate teacher targets for (content, style) pairs on a Ray cluster.

    python -m jobs.generate --content photos/ --styles paintings/ --out runs/demo
    ray job submit --address http://HEAD:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.generate --model MODEL \
        --content s3://b/coco --faces s3://b/faces --styles s3://b/wikiart \
        --planner recipe --combinations 90 --out s3://b/run1 --workers 1:16 --gpus-per-worker 1

On a cluster (README), --working-dir ships this checkout to the job: the driver and every
teacher actor run that code, in the image that carries the dependencies.

Validates everything (inputs exist, output writable, options sane) before any GPU work; a
re-run finishes what no manifest lists yet (unusable inputs are tried again) and redoes nothing.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import ray
import torch

from common.cli import (
    add_storage_option,
    check_number,
    positive_int,
    run_cli,
)
from common.errors import UserError
from common.inputs import check_golden_leak, expand_images
from common.manifest import forget_failures, listed_pairs
from common.planning import (
    VAL_FRACTION,
    Pair,
    make_tiles,
    plan_grid,
    recipe_pairs,
    sample_combinations,
)
from common.ray_connect import connect_ray
from common.run_info import write_run_info
from common.storage import Storage, StorageOptions
from teacher_workers.generation import PoolConfig, generate
from teacher_workers.node_fit import wait_for_fit
from teacher_workers.options import TeacherOptions, add_teacher_arguments, teacher_options
from teacher_workers.sizing import auto_tile

log = logging.getLogger("jobs.generate")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = parser.add_argument_group("inputs and output")
    io.add_argument(
        "--content", nargs="+", required=True, help="content images: files, folders, globs"
    )
    io.add_argument("--styles", nargs="+", required=True, help="style images")
    io.add_argument("--faces", nargs="+", default=[], help="face images (recipe planner)")
    io.add_argument("--golden-content", nargs="+", default=[], help="held-out golden contents")
    io.add_argument("--golden-styles", nargs="+", default=[], help="held-out golden styles")
    io.add_argument("--out", required=True, help="output root URL (local dir, s3://, ...)")
    add_storage_option(io)
    plan = parser.add_argument_group("planning")
    plan.add_argument("--planner", choices=("grid", "recipe"), default="grid")
    plan.add_argument("--combinations", type=positive_int, default=1, help="recipe combinations")
    plan.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    plan.add_argument("--plan-seed", type=int, default=0)
    plan.add_argument(
        "--tile",
        default="auto",
        help="contents x styles per work unit, e.g. 12x8; auto: as many as the "
        "features fit in --gpu-memory-gb (12x8 on CPU)",
    )
    plan.add_argument(
        "--gpu-memory-gb",
        type=float,
        default=24.0,
        help="GPU memory of a worker, for --tile auto (24 = A10G, cluster.yaml's g5.2xlarge)",
    )
    pool = parser.add_argument_group("Ray actor pool")
    pool.add_argument(
        "--workers", default="1:1", help="MIN:MAX actors (an autoscaler grows the pool)"
    )
    pool.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="default: 1 if the cluster has GPUs now, else 0",
    )
    pool.add_argument("--cpus-per-worker", type=float, default=1.0)
    pool.add_argument(
        "--startup-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="on an autoscaling cluster, how long to wait for a node that fits one worker",
    )
    add_teacher_arguments(parser)
    return parser.parse_args(argv)


def parse_pair(text: str, sep: str, what: str) -> tuple[int, int]:
    try:
        first, second = (int(x) for x in text.split(sep))
    except ValueError:
        raise UserError(f"{what} must look like A{sep}B with integers, got {text!r}") from None
    if first < 1 or second < 1:
        raise UserError(f"{what} values must be >= 1, got {text!r}")
    return first, second


def expand_optional(arguments: list[str], options: dict, role: str) -> list[str]:
    return expand_images(arguments, options, role) if arguments else []


def plan(args: argparse.Namespace, options: dict) -> tuple[list[Pair], list]:
    """Expand inputs and plan the pairs, with the recipe's combinations as tile blocks (all
    failures here are one-line `UserError`s)."""
    contents = expand_images(args.content, options, "content")
    styles = expand_images(args.styles, options, "style")
    faces = expand_optional(args.faces, options, "face")
    golden_c = expand_optional(args.golden_content, options, "golden content")
    golden_s = expand_optional(args.golden_styles, options, "golden style")
    check_golden_leak([*golden_c, *golden_s], [*contents, *faces, *styles], options)
    if args.planner == "grid":
        pairs = plan_grid(
            [*contents, *faces], styles, args.val_fraction, args.plan_seed, golden_c, golden_s
        )
        return pairs, []
    drawn = sample_combinations(contents, faces, styles, args.combinations, args.plan_seed)
    pairs = recipe_pairs(
        drawn, [*contents, *faces, *styles], args.val_fraction, args.plan_seed, golden_c, golden_s
    )
    return pairs, drawn


def pool_config(args: argparse.Namespace) -> PoolConfig:
    """The actor pool flags, checked before Ray starts or the output is touched."""
    min_w, max_w = parse_pair(args.workers, ":", "--workers")
    return PoolConfig(
        min_w, max_w, args.gpus_per_worker, args.cpus_per_worker, args.startup_timeout
    )


def gpus_per_worker(pool: PoolConfig, teacher: TeacherOptions) -> float:
    """GPUs per actor: as asked; else 1 when the cluster has GPUs, or may get them.

    An autoscaling cluster starts with no GPU nodes, so "none now" is no reason to run SD 1.5 on
    CPUs; only the tiny test model, or --device cpu, runs on CPU by default.
    """
    if pool.gpus_per_worker is not None:
        return pool.gpus_per_worker
    if teacher.device == "cpu":
        return 0.0
    if ray.cluster_resources().get("GPU", 0) > 0:
        return 1.0
    if teacher.model == "tiny":
        return 0.0
    log.warning(
        "no GPU in the cluster yet: actors wait for GPU nodes (pass "
        "--gpus-per-worker 0 to run %s on CPUs)",
        teacher.model,
    )
    return 1.0


def placed_options(teacher: TeacherOptions, gpus: float) -> TeacherOptions:
    """Pin device and dtype so the driver's teacher hash is the one the actors produce."""
    device = "cuda" if gpus > 0 else "cpu"
    return replace(teacher, device=device, dtype=teacher.resolved_dtype(torch.device(device)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    storage_options = StorageOptions(tuple(args.storage_option))
    teacher = teacher_options(args)
    tile = None if args.tile == "auto" else parse_pair(args.tile, "x", "--tile")
    pool = pool_config(args)
    check_number("--gpu-memory-gb", args.gpu_memory_gb)
    teacher = teacher.pinned()
    pairs, blocks = plan(args, storage_options)
    storage = Storage(args.out, storage_options)
    storage.check_writable()
    connect_ray()
    gpus = gpus_per_worker(pool, teacher)
    pool = replace(pool, gpus_per_worker=gpus)
    wait_for_fit(pool.cpus_per_worker, gpus, pool.startup_timeout_s)
    teacher = placed_options(teacher, gpus)
    if tile is None:
        tile = auto_tile(teacher, args.gpu_memory_gb) if gpus > 0 else (12, 8)
    teacher_hash = teacher.hash(torch.device(teacher.device))
    # Only pairs no manifest lists are tiled: a failed pair is tried again, and a pair listed
    # by an earlier run (of other inputs or tiles) is never made or listed twice.
    done = listed_pairs(storage, teacher_hash)
    todo = [p for p in pairs if (p.content, p.style) not in done]
    tiles = make_tiles(todo, *tile, blocks=blocks)
    config = {k: v for k, v in vars(args).items() if k != "storage_option"}
    write_run_info(
        storage,
        "generate",
        config,
        storage_options,
        teacher_hash=teacher_hash,
        teacher=repr(teacher),
        pairs=len(pairs),
        tiles=len(tiles),
    )
    listed = len(pairs) - len(todo)
    print(
        f"{len(pairs)} pairs, {listed} listed already; {len(todo)} in {len(tiles)} tiles of up "
        f"to {tile[0]}x{tile[1]} -> {storage.url('targets/' + teacher_hash)}"
    )
    forget_failures(storage, teacher_hash, {u for p in pairs for u in (p.content, p.style)})
    summary = generate(tiles, teacher, storage, storage_options, teacher_hash, pool, listed)
    print(summary.line())
    print(f"manifests: {storage.url('manifests/' + teacher_hash)}")
    if summary.failed_now:
        print(f"unusable inputs are listed in {storage.url('failures/' + teacher_hash)}")
    return 0


# `styleid-generate` (pyproject.toml [project.scripts]) and `python -m jobs.generate`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
