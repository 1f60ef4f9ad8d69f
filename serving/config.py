"""The options of a served student: one typed config, validated where it is made, that the
driver (`jobs.serve`), the Ray Serve deployment and `serve deploy`'s application builder share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from common.cli import check_at_least, check_number, choice_flag, pair_flag
from common.errors import UserError
from student.choices import AUTHORS_MICROAST, PRECISIONS

GALLERY = str(Path(__file__).resolve().parent / "gallery")  # links to samples/styles/
DEVICES = ("auto", "cpu", "cuda")
MiB = 1 << 20
# the options that count something, each at least 1
COUNTS = (
    "batch_size",
    "max_ongoing_requests",
    "max_queued_requests",
    "max_side",
    "max_pixels",
    "style_cache",
)


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """What `python -m jobs.serve` serves, and how: the student, its style gallery, replicas,
    batching and the limits that keep a replica up under bad input and overload."""

    student: str = AUTHORS_MICROAST
    """student to serve: a training run folder or checkpoint (any fsspec URL), or
    microast-authors (the MicroAST authors' weights shipped with the project)"""
    gallery: str = GALLERY
    """folder (or URL) of style images offered by id on the page and in /styles"""
    replicas: Annotated[tuple[int, int], pair_flag(":", "--replicas", "MIN:MAX")] = (1, 1)
    """replicas MIN:MAX; Serve's autoscaling adds replicas up to MAX under load"""
    cpus_per_replica: float = 1.0
    """CPUs each replica reserves (and torch threads it runs)"""
    gpus_per_replica: float = 0.0
    """GPUs each replica reserves (fractions share a GPU)"""
    batch_size: int = 4
    """most requests one model call takes (Serve's dynamic batching; 1: no batching)"""
    batch_wait_s: float = 0.01
    """longest wait for a batch to fill, seconds"""
    max_ongoing_requests: int = 8
    """requests a replica works on at once; more wait in Serve's queue"""
    max_queued_requests: int = 32
    """requests waiting for a replica; past this the client gets a quick 503"""
    max_side: int = 512
    """images are scaled so their longer side is at most this"""
    max_upload_mb: float = 20.0
    """largest upload accepted, MiB (larger: 413)"""
    max_pixels: int = 40_000_000
    """largest image accepted, pixels, read from the header before decoding (larger: 413)"""
    style_cache: int = 64
    """encoded styles kept per replica (least recently used go first)"""
    device: Annotated[Literal[DEVICES], choice_flag("--device", DEVICES)] = "auto"  # type: ignore[valid-type]
    """auto = cuda when the replica has a GPU, else cpu"""
    precision: Annotated[Literal[PRECISIONS], choice_flag("--precision", PRECISIONS)] = "fp32"  # type: ignore[valid-type]
    """student math, as in jobs.stylize (auto = bf16 where faster here)"""

    def __post_init__(self) -> None:
        low, high = self.replicas
        if low > high:
            raise UserError(f"--replicas {low}:{high}: MIN is above MAX")
        check_number("--cpus-per-replica", self.cpus_per_replica)
        check_number("--gpus-per-replica", self.gpus_per_replica, inclusive=True)
        check_number("--batch-wait-s", self.batch_wait_s, inclusive=True)
        check_number("--max-upload-mb", self.max_upload_mb)
        check_at_least(1, **{name: getattr(self, name) for name in COUNTS})
        if self.device == "cuda" and not self.gpus_per_replica:
            raise UserError("--device cuda needs --gpus-per-replica > 0")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MiB)

    def deployment_options(self) -> dict[str, Any]:
        """Ray Serve's deployment options for these replicas: a fixed count, or autoscaling
        between MIN and MAX that aims at `batch_size` requests in flight per replica."""
        low, high = self.replicas
        scaling: dict[str, Any] = (
            {"num_replicas": low}
            if low == high
            else {
                "autoscaling_config": {
                    "min_replicas": low,
                    "max_replicas": high,
                    "target_ongoing_requests": self.batch_size,
                }
            }
        )
        return scaling | {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {
                "num_cpus": self.cpus_per_replica,
                "num_gpus": self.gpus_per_replica,
            },
        }


def serve_logging(verbose: bool) -> dict[str, str]:
    """Serve's logging config for its controller, proxy and replicas. At INFO they log every
    request (to Ray's session files and, through Ray's log monitor, to the driver): kept for
    --verbose, as the rest of Ray's lines are. `jobs.serve` and the load benchmark share it."""
    return {"log_level": "INFO" if verbose else "WARNING"}
