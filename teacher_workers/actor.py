"""The Ray actor of the generation service: a Ray Data callable class over batches of tiles.

Ray Data's actor pool gives the queue, the autoscaling pool (min..max actors, one GPU each)
and fault tolerance: a dead actor is restarted and its batch retried, which is safe because
`TileRunner` skips what is already stored. Each actor takes `TILES_IN_FLIGHT` tiles at once
(threads of one actor, sharing its engine), so one tile's reads and writes overlap the other's
engine time and the next tile starts computing while the previous one's writes finish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.errors import first_line
from teacher_workers.options import TeacherOptions
from teacher_workers.tile_runner import TileRunner, tile_from_json


class WorkUnitError(Exception):
    """A tile that failed, as "Type: first line" of its cause. Plain text reaches the driver
    whatever the cause was (not every exception pickles), and the chained original stays in
    the worker's log."""


class TileActor:
    """Builds one engine when the actor starts, then runs each tile it is given; called from
    up to `TILES_IN_FLIGHT` threads at once."""

    def __init__(
        self, options: TeacherOptions, root: str, storage_options: dict[str, Any], teacher_hash: str
    ) -> None:
        self.runner = TileRunner(options, root, storage_options, teacher_hash)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        """Run each tile of the batch; one small result row per tile."""
        try:
            results = [self.runner.run(tile_from_json(str(text))) for text in batch["tile"]]
        except Exception as exc:
            raise WorkUnitError(f"{type(exc).__name__}: {first_line(exc)}") from exc
        return {
            name: [getattr(r, name) for r in results]
            for name in ("tile_id", "written", "found", "failed", "seconds")
        }
