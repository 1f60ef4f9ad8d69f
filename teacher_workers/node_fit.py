"""Whether one worker of the actor pool can ever be placed, checked before the pool starts.

Ray queues an actor that no node can hold forever, while the autoscaler repeats the same line:
`--gpus-per-worker 1` on a cluster without GPUs used to hang the job. An actor must fit on one
node, so its request is compared with each live node's total resources. When none fits, the
cluster is asked what it could become, in the ways that work on every Ray cluster (`ray up`,
KubeRay, managed Ray), not from a file only one launcher writes:

- the cluster config in the GCS, which Ray Train and Ray Data read for the cluster's maximum
  resources: where an autoscaler reports it, its node groups say at once whether any could
  hold the worker;
- otherwise the autoscaler itself: the request is handed to it (`request_resources`) and its
  status watched for `PROBE_S`: an autoscaler that starts a node for it is waited for, saying
  so every 30 s, for up to `--startup-timeout` seconds; one that starts nothing (a fixed-size
  cluster, or no node type holds the worker) ends the job with one line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

import ray
from ray._private import ray_constants
from ray._private.state import state
from ray.autoscaler.sdk import request_resources
from ray.autoscaler.v2.sdk import get_cluster_status
from ray.autoscaler.v2.utils import is_autoscaler_v2
from ray.experimental.internal_kv import _internal_kv_get

from common.errors import UserError

log = logging.getLogger(__name__)

FLAGS = {"GPU": "--gpus-per-worker", "CPU": "--cpus-per-worker"}
# How long an autoscaler gets to start launching a node for the request: two of its update
# rounds (AUTOSCALER_UPDATE_INTERVAL_S, 5 s) and the time to report them.
PROBE_S = 15.0


def fits(request: Mapping[str, float], resources: Mapping[str, float]) -> bool:
    """Whether one node with `resources` holds the whole request."""
    return all(resources.get(name, 0.0) >= amount for name, amount in request.items())


def scalable_groups() -> dict[str, dict[str, float]] | None:
    """Resources of each node group the GCS cluster config says may grow (max above min, or
    unbounded), as Ray Data decides whether a cluster autoscales; None where no autoscaler
    reports a config (Ray's own launchers up to 2.60 do not)."""
    config = state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    return {
        group.name: dict(group.resources)
        for group in config.node_group_configs
        if group.max_count == -1 or group.max_count > group.min_count
    }


def autoscaler_launching() -> bool:
    """Whether the autoscaler reports a node being launched or starting (what `ray status`
    shows as pending), read from the GCS as `ray status` does for either autoscaler version."""
    if is_autoscaler_v2(fetch_from_server=True):
        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        return bool(status.pending_launches or status.pending_nodes)
    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    report = (json.loads(raw).get("autoscaler_report") or {}) if raw else {}
    return bool(report.get("pending_launches") or report.get("pending_nodes"))


def wait_for_fit(
    cpus: float,
    gpus: float,
    timeout_s: float,
    poll_s: float = 2.0,
    report_s: float = 30.0,
    probe_s: float = PROBE_S,
) -> None:
    """Return once a live node can hold one worker; otherwise one-line `UserError`s (see the
    module docstring)."""
    request = {name: amount for name, amount in (("CPU", cpus), ("GPU", gpus)) if amount > 0}
    nodes = _live_nodes()
    if any(fits(request, node) for node in nodes):
        return
    short = [name for name in request if not any(fits({name: request[name]}, n) for n in nodes)]
    flags = " ".join(f"{FLAGS[name]} {request[name]:g}" for name in short or request)
    want = " and ".join(f"{amount:g} {name}" for name, amount in request.items())
    groups = scalable_groups()
    if groups is not None and not any(fits(request, spec) for spec in groups.values()):
        raise UserError(f"{flags}: no node group the cluster may add has {want}; ask for less")
    request_resources(bundles=[request])
    try:
        if groups is None:
            _probe(request, flags, want, nodes, probe_s, poll_s)
        _wait(request, flags, want, timeout_s, poll_s, report_s)
    finally:
        request_resources(bundles=[])  # the pool's own actors keep the node busy from here


def _probe(
    request: Mapping[str, float],
    flags: str,
    want: str,
    nodes: list[dict[str, float]],
    probe_s: float,
    poll_s: float,
) -> None:
    """Return once the autoscaler starts a node (or one that fits joins) within `probe_s`."""
    deadline = time.monotonic() + probe_s
    while time.monotonic() < deadline:
        if autoscaler_launching() or any(fits(request, node) for node in _live_nodes()):
            return
        time.sleep(poll_s)
    have = "; ".join(sorted({_describe(node) for node in nodes})) or "no live node"
    raise UserError(
        f"{flags}: no node in the cluster has {want} (it has {have}) and the autoscaler "
        f"started none within {probe_s:g} s (a fixed-size cluster, or no node type it may add "
        "has it); ask for less or add such a node"
    )


def _wait(
    request: Mapping[str, float],
    flags: str,
    want: str,
    timeout_s: float,
    poll_s: float,
    report_s: float,
) -> None:
    """Wait for a node that holds the request, saying so at once and every `report_s`."""
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


def _live_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def _describe(resources: Mapping[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
