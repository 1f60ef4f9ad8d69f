"""Whether one worker of the actor pool can ever be placed, checked before the pool starts.

Ray queues an actor that no node can hold forever, while the autoscaler repeats the same line:
`--gpus-per-worker 1` on a cluster without GPUs used to hang the job. An actor must fit on one
node, so its request is compared with each live node's total resources. When none fits, a
fixed-size cluster never will, and the job stops with one line. A cluster started by `ray up`
autoscales; its head, where job drivers run, holds the launcher config at
~/ray_bootstrap_config.yaml, whose node types say what a new node would have. If one of them
fits, the autoscaler is asked for such a node and the job waits, saying so every 30 s, for up to
`--startup-timeout` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import ray
import yaml
from ray.autoscaler.sdk import request_resources

from common.errors import UserError

log = logging.getLogger(__name__)

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
FLAGS = {"GPU": "--gpus-per-worker", "CPU": "--cpus-per-worker"}


def fits(request: Mapping[str, float], resources: Mapping[str, float]) -> bool:
    """Whether one node with `resources` holds the whole request."""
    return all(resources.get(name, 0.0) >= amount for name, amount in request.items())


def node_types(config: Path) -> dict[str, dict[str, float] | None] | None:
    """Resources of each node type the autoscaler may start (None for a type that leaves them
    to the autoscaler, which reads them from the instance type); None without a config."""
    if not config.is_file():
        return None
    types = (yaml.safe_load(config.read_text()) or {}).get("available_node_types") or {}
    return {name: spec.get("resources") for name, spec in types.items()}


def wait_for_fit(
    cpus: float,
    gpus: float,
    timeout_s: float,
    config: Path | None = None,
    poll_s: float = 2.0,
    report_s: float = 30.0,
) -> None:
    """Return once a live node can hold one worker; otherwise one-line `UserError`s (see the
    module docstring). `config` is the autoscaler's launcher config (default: ~/...)."""
    request = {name: amount for name, amount in (("CPU", cpus), ("GPU", gpus)) if amount > 0}
    nodes = _live_nodes()
    if any(fits(request, node) for node in nodes):
        return
    short = [name for name in request if not any(fits({name: request[name]}, n) for n in nodes)]
    flags = " ".join(f"{FLAGS[name]} {request[name]:g}" for name in short or request)
    want = " and ".join(f"{amount:g} {name}" for name, amount in request.items())
    config = config or Path(BOOTSTRAP_CONFIG).expanduser()
    types = node_types(config)
    if types is None:
        have = "; ".join(sorted({_describe(node) for node in nodes})) or "no live node"
        raise UserError(
            f"{flags}: no node in the cluster has {want} (it has {have}) and the cluster does "
            f"not autoscale (no {config}); ask for less or add such a node"
        )
    if not any(spec is None or fits(request, spec) for spec in types.values()):
        raise UserError(f"{flags}: no node type in {config} has {want}; ask for less")
    request_resources(bundles=[request])
    try:
        start = next_report = time.monotonic()
        while not any(fits(request, node) for node in _live_nodes()):
            now = time.monotonic()
            if now - start >= timeout_s:
                raise UserError(
                    f"{flags}: no node with {want} joined the cluster within --startup-timeout "
                    f"{timeout_s:g} s; the autoscaler's log says why (ray status, "
                    "/tmp/ray/session_latest/logs/monitor.*)"
                )
            if now >= next_report:
                log.warning(
                    "waiting for the autoscaler to start a node with %s: %.0f s of "
                    "--startup-timeout %g s",
                    want,
                    now - start,
                    timeout_s,
                )
                next_report = now + report_s
            time.sleep(poll_s)
    finally:
        request_resources(bundles=[])  # the pool's own actors keep the node busy from here


def _live_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def _describe(resources: Mapping[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
