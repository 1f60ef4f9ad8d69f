r"""Generate teacher targets for (content, style) pairs on a Ray cluster.

    python -m jobs.generate --content photos/ --styles paintings/ --out runs/demo
    python -m jobs.generate --teacher lsast --content photos/ --style-prompts styles/van-gogh \
        --model MODEL --controlnet lllyasviel/control_v11p_sd15_canny --out runs/lsast
    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.generate --model MODEL \
        --content s3://b/coco --faces s3://b/faces --styles s3://b/wikiart \
        --planner recipe --combinations 90 --out s3://b/run1 --workers 1:16 --gpus-per-worker 1

On a cluster (README), --working-dir ships this checkout to the job: the driver and every
teacher actor run that code, in the image that carries the dependencies.

Validates everything (inputs exist, output writable, options sane) before any GPU work; a
re-run finishes what no manifest lists yet (unusable inputs are tried again) and redoes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Annotated, Literal, get_args

import tyro

from common.cli import StorageJobArgs, check_number, choice_flag, pair_flag, parse, run_cli
from common.errors import UserError
from common.inputs import check_golden_leak, expand_images
from common.lease import OutputLease
from common.manifest import forget_failures, listed_pairs
from common.planning import (
    MAX_TILE,
    VAL_FRACTION,
    Combination,
    Pair,
    make_tiles,
    plan_grid,
    plan_recipe,
)
from common.run_info import write_run_info
from common.run_log import run_log
from common.storage import Storage
from teacher_workers.options import TeacherOptions
from teacher_workers.pool import PoolConfig

log = logging.getLogger("jobs.generate")

Planner = Literal["grid", "recipe"]


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.generate`."""

    content: tuple[str, ...]
    """content images: files, folders, globs"""
    styles: tuple[str, ...] = ()
    """style images (StyleID)"""
    style_prompts: tuple[str, ...] = ()
    """learned styles (LSAST): prompt files or jobs.learn_style output folders"""
    faces: tuple[str, ...] = ()
    """face images (recipe planner)"""
    golden_content: tuple[str, ...] = ()
    """held-out golden contents"""
    golden_styles: tuple[str, ...] = ()
    """held-out golden styles (LSAST: learned)"""
    out: str
    """output root URL (local dir, s3://, ...)"""
    planner: Annotated[Planner, choice_flag("--planner", get_args(Planner))] = "grid"
    """grid: every content with every style; recipe: drawn content/face/style combinations"""
    combinations: int = 1
    """recipe combinations"""
    val_fraction: float = VAL_FRACTION
    """share of the contents (grid) or combinations (recipe) held out for validation"""
    plan_seed: int = 0
    """seeds the split and the recipe's draw"""
    tile: Annotated[tuple[int, int] | None, pair_flag("x", "--tile", "AxB|auto", "auto")] = None
    """contents x styles per work unit, e.g. 12x8; auto: as many as fit --gpu-memory-gb"""
    gpu_memory_gb: float = 24.0
    """GPU memory of a worker, for --tile auto (24 = A10G, cluster.yaml's g5.2xlarge)"""
    pool: Annotated[PoolConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=PoolConfig)
    teacher: Annotated[TeacherOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=TeacherOptions
    )

    def __post_init__(self) -> None:
        check_number("--gpu-memory-gb", self.gpu_memory_gb)
        check_number("--combinations", self.combinations, 1, inclusive=True)


# the flag of each kind of style input, and the other one
STYLE_FLAGS = {"image": ("--styles", "--style-prompts"), "learned": ("--style-prompts", "--styles")}


def expand_styles(args: Args) -> tuple[list[str], list[str]]:
    """Style URLs and golden style URLs, as the teacher takes them: images (--styles) or
    learned styles (--style-prompts), each read and checked here, so a missing or corrupt one
    is one line before any work."""
    teacher = args.teacher.teacher
    flag, other = STYLE_FLAGS[teacher.style_input]
    given = {"--styles": args.styles, "--style-prompts": args.style_prompts}
    if given[other]:
        raise UserError(f"--teacher {teacher.name} takes {flag}, not {other}")
    if not given[flag]:
        raise UserError(f"{flag} is required with --teacher {teacher.name}")
    options, storage = args.teacher, args.storage
    golden = args.golden_styles and teacher.style_urls(
        options, args.golden_styles, storage, "golden style"
    )
    return teacher.style_urls(options, given[flag], storage, "style"), golden


def plan(args: Args) -> tuple[list[Pair], list[Combination]]:
    """Expand inputs and plan the pairs, with the recipe's combinations as tile blocks (all
    failures here are one-line `UserError`s)."""
    contents = expand_images(args.content, args.storage, "content")
    styles, golden_s = expand_styles(args)
    faces = expand_images(args.faces, args.storage, "face")
    golden_c = expand_images(args.golden_content, args.storage, "golden content")
    check_golden_leak([*golden_c, *golden_s], [*contents, *faces, *styles], args.storage)
    split = dict(val_fraction=args.val_fraction, golden_contents=golden_c, golden_styles=golden_s)
    if args.planner == "grid":
        return plan_grid([*contents, *faces], styles, seed=args.plan_seed, **split), []
    return plan_recipe(contents, faces, styles, args.combinations, args.plan_seed, **split)


def gpus_per_worker(pool: PoolConfig, teacher: TeacherOptions) -> float:
    """GPUs per actor: as asked; else 1 when the cluster has GPUs, or may get them.

    An autoscaling cluster starts with no GPU nodes, so "none now" is no reason to run SD 1.5 on
    CPUs; only the tiny test model, or --device cpu, runs on CPU by default.
    """
    if pool.gpus_per_worker is not None:
        return pool.gpus_per_worker
    import ray

    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    if teacher.device == "cpu" or (teacher.model == "tiny" and not has_gpus):
        return 0.0
    if not has_gpus:
        log.warning(
            "no GPU in the cluster yet: actors wait for GPU nodes (pass "
            "--gpus-per-worker 0 to run %s on CPUs)",
            teacher.model,
        )
    return 1.0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.generate", __doc__)
    args = replace(args, teacher=args.teacher.chosen())
    teacher = args.teacher.pinned()
    pairs, blocks = plan(args)
    storage = Storage(args.out, args.storage)
    storage.check_writable()
    with OutputLease(storage, "generate"):  # no other run writes here while this one does
        if removed := storage.remove_leftovers():
            print(f"removed {removed} temporary files of writes an earlier run did not finish")
        with run_log(storage, "generate"):
            return run(args, teacher, pairs, blocks, storage)


def run(
    args: Args,
    teacher: TeacherOptions,
    pairs: list[Pair],
    blocks: list[Combination],
    storage: Storage,
) -> int:
    """Tile the pairs no manifest lists yet and generate them on Ray."""
    import torch  # here, not at the top: `--help` answers without loading torch and Ray

    from common.ray_connect import connect_ray
    from teacher_workers.generation import generate
    from teacher_workers.node_fit import wait_for_fit

    connect_ray()
    gpus = gpus_per_worker(args.pool, teacher)
    pool = replace(args.pool, gpus_per_worker=gpus)
    wait_for_fit(pool.cpus_per_worker, gpus, pool.startup_timeout_s)
    # device and dtype pinned, so that the driver's teacher hash is the one the actors produce
    device = torch.device("cuda" if gpus > 0 else "cpu")
    teacher = replace(teacher, device=device.type, dtype=teacher.resolved_dtype(device))
    # the teacher sizes a GPU's tile; on CPUs, memory does not bound it
    tile = args.tile or (teacher.tile(args.gpu_memory_gb) if gpus > 0 else MAX_TILE)
    teacher_hash = teacher.hash(device)
    # Only pairs no manifest lists are tiled: a failed pair is tried again, and a pair listed
    # by an earlier run (of other inputs or tiles) is never made or listed twice.
    done = listed_pairs(storage, teacher_hash)
    todo = [p for p in pairs if (p.content, p.style) not in done]
    tiles = make_tiles(todo, *tile, blocks=blocks)
    config = {name: value for name, value in asdict(args).items() if name != "storage"}
    write_run_info(
        storage,
        "generate",
        config,
        teacher_hash=teacher_hash,
        teacher=repr(teacher),
        pairs=len(pairs),
        tiles=len(tiles),
        **teacher.teacher.describe(teacher),
    )
    listed = len(pairs) - len(todo)
    print(
        f"{len(pairs)} pairs, {listed} listed already; {len(todo)} in {len(tiles)} tiles of up "
        f"to {tile[0]}x{tile[1]} -> {storage.url('targets/' + teacher_hash)}"
    )
    forget_failures(storage, teacher_hash, {u for p in pairs for u in (p.content, p.style)})
    summary = generate(tiles, teacher, storage, teacher_hash, pool, listed)
    print(summary.line())
    print(f"manifests: {storage.url('manifests/' + teacher_hash)}")
    if summary.failed_now:
        print(f"unusable inputs are listed in {storage.url('failures/' + teacher_hash)}")
    return 0


cli = partial(run_cli, main)  # the console script `styleid-generate` (pyproject.toml)

if __name__ == "__main__":
    cli()
