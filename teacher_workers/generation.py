"""Running a planned set of tiles on a Ray actor pool, with progress and a summary.

Images travel as URLs: the actors read inputs and write targets themselves, and only small
result rows come back through Ray.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ray
from tqdm import tqdm

from common.errors import UserError
from common.planning import Tile
from common.storage import Storage
from teacher_workers.actor import TileActor, WorkUnitError
from teacher_workers.options import TeacherOptions
from teacher_workers.pool import PoolConfig
from teacher_workers.tile_runner import TILES_IN_FLIGHT, tile_to_json


@dataclass
class Summary:
    """Pair counts and wall time of one generation run, for the closing line: every planned pair
    was written now, already done (listed, or stored by an interrupted attempt) or failed now
    (an unusable input; the next run tries it again)."""

    planned: int = 0
    written: int = 0
    already_done: int = 0
    failed_now: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds else 0.0
        return (
            f"pairs planned {self.planned}, written {self.written}, already done "
            f"{self.already_done}, failed now {self.failed_now}; {self.seconds:.1f} s wall, "
            f"{rate:.2f} new pairs/s"
        )


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def failure_cause(exc: BaseException) -> str:
    """The type and first line of what failed in a work unit, for the job's one error line.

    Ray's errors wrap the cause in text that names the actor (with its id and ANSI colours);
    the innermost exception is what the user can act on (a refused endpoint, a full disk).
    """
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    lines = ANSI_ESCAPE.sub("", str(exc)).strip().splitlines() or [""]
    if isinstance(exc, WorkUnitError):
        return lines[0]
    if lines[0].startswith("ray::"):
        # A cause Ray could not hand over: its traceback text ends with the cause's own line.
        return lines[-1].strip()
    return f"{type(exc).__name__}: {lines[0]}" if lines[0] else type(exc).__name__


def generate(
    tiles: Sequence[Tile],
    options: TeacherOptions,
    storage: Storage,
    teacher_hash: str,
    pool: PoolConfig,
    listed: int = 0,
) -> Summary:
    """Run the tiles of a run's unlisted pairs on the actor pool (`listed` planned pairs were
    listed already); returns what happened."""
    start = time.perf_counter()
    summary = Summary(planned=listed + sum(len(t) for t in tiles), already_done=listed)
    if tiles:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.raise_original_map_exception = True  # not Ray Data's cause-less wrapper
        rows = ray.data.from_items(
            [{"tile": tile_to_json(t)} for t in tiles], override_num_blocks=len(tiles)
        )
        results = rows.map_batches(
            TileActor,
            batch_size=1,
            fn_constructor_kwargs={
                "options": options,
                "root": storage.root,
                "storage_options": storage.options,
                "teacher_hash": teacher_hash,
            },
            compute=ray.data.ActorPoolStrategy(
                # no actor (each loads a teacher) for which there is no tile
                min_size=min(pool.workers[0], len(tiles)),
                max_size=min(pool.workers[1], len(tiles)),
                max_concurrent_calls_per_actor=TILES_IN_FLIGHT,
                enable_true_multi_threading=True,  # TileRunner locks its engine itself
            ),
            num_gpus=pool.gpus_per_worker,
            num_cpus=pool.cpus_per_worker,
        )
        with tqdm(
            total=summary.planned,
            initial=summary.already_done,
            unit="pair",
            desc="generate",
            mininterval=1.0,
        ) as bar:
            try:
                for row in results.iter_rows():
                    summary.written += row["written"]
                    summary.already_done += row["found"]
                    summary.failed_now += row["failed"]
                    bar.update(row["written"] + row["found"] + row["failed"])
            except ray.exceptions.RayError as exc:
                raise UserError(
                    f"a work unit failed: {failure_cause(exc)}; finished tiles are kept, "
                    "run the same command again to retry the rest"
                ) from None
    summary.seconds = time.perf_counter() - start
    return summary
