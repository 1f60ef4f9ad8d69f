"""Each epoch's metrics as TensorBoard event files, the records TensorBoard and its readers know.

Rank 0 writes them with PyTorch's `SummaryWriter` into a local folder and copies the file after
every epoch to the run's TensorBoard folder, any fsspec URL (TensorBoard reads s3:// and gs://
log dirs itself): see `TrainConfig.tensorboard_url`. The scalars are named as in
`metrics.jsonl`, at step `epoch`. (tensorboardX, which Ray Train brings, is not used: its
`flush` leaves queued events unwritten, so the copy would lag an epoch behind.)

Every writer purges the steps from its first epoch on (`purge_step`), so the epochs that a
worker group restarted after a failure runs again are shown once, as in `metrics.jsonl`.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from common.storage import Storage


class TensorBoardLog:
    """One writer of a run's event files, for the epochs after `last_epoch`."""

    def __init__(self, storage: Storage, last_epoch: int) -> None:
        self.storage = storage
        self.folder = tempfile.TemporaryDirectory(prefix="tensorboard-")
        # a unique file name: a restart in the same second must not replace the last file
        self.writer = SummaryWriter(
            self.folder.name, purge_step=last_epoch + 1, filename_suffix=f".{uuid.uuid4().hex}"
        )

    def log(self, metrics: Mapping[str, Any]) -> None:
        """One epoch's metrics, each as a scalar at step `epoch`, written through to the run."""
        for key, value in metrics.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), metrics["epoch"])
        self.writer.flush()
        for file in Path(self.folder.name).iterdir():
            self.storage.write_bytes(file.name, file.read_bytes())

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.writer.close()
        self.folder.cleanup()
