"""Where `jobs.evaluate`'s heavy part runs (the student and the measuring networks over the
golden set, and LSAST beside them): a Ray job's driver sits on the CPU-only head, so on a
cluster with GPUs the work goes to a GPU worker as a Ray task holding one GPU, and comes back
as its result (the outputs themselves go straight to storage from there)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal, TypeVar

from common.errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")


def run_placed(work: Callable[..., T], device: Device, **kwargs: object) -> T:
    """`work(device=..., **kwargs)` where `device` says:

    - cpu: here, on this machine's CPU;
    - cuda: in a Ray task holding one GPU; an autoscaling cluster adds a GPU node for it, a
      cluster that has no GPU and can add none is a `UserError`;
    - auto: in a Ray job (RAY_ADDRESS set, as `ray job submit` does) as cuda when the cluster
      has or can add a GPU; else here, on this machine's GPU if it has one, else its CPU.
    """
    if device == "cpu":
        return work(device="cpu", **kwargs)
    if device == "auto" and not os.environ.get("RAY_ADDRESS"):
        return work(device=local_device(), **kwargs)
    import ray

    from common.ray_connect import connect_ray

    connect_ray()
    if not cluster_has_gpus():
        if device == "cuda":
            raise UserError(
                "--device cuda: the Ray cluster has no GPU and cannot add one (use --device cpu)"
            )
        return work(device="cpu", **kwargs)
    print("evaluating on a GPU worker (a Ray task holding one GPU)")
    task = ray.remote(num_gpus=1, max_retries=0)(on_gpu_worker)
    return ray.get(task.remote(work, kwargs))


def local_device() -> str:
    """This machine's GPU if it has one, else its CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cluster_has_gpus() -> bool:
    """Whether the connected cluster has a GPU now, or a node group with GPUs that may grow
    (the GCS cluster config, as `teacher_workers.node_fit` reads it)."""
    import ray

    from teacher_workers.node_fit import scalable_groups

    if ray.cluster_resources().get("GPU", 0) > 0:
        return True
    return any(group.get("GPU", 0) > 0 for group in (scalable_groups() or {}).values())


def on_gpu_worker(work: Callable[..., T], kwargs: dict[str, object]) -> T:
    """The Ray task's body: `work` on the GPU Ray gave it. A worker whose CUDA cannot see
    that GPU (a node that advertises GPUs without drivers) runs on its CPU and says so."""
    device = local_device()
    if device == "cpu":
        log.warning("Ray gave this task a GPU that CUDA cannot see: evaluating on the CPU")
    return work(device=device, **kwargs)
