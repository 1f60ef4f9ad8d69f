"""How every job joins Ray: the cluster in RAY_ADDRESS, or a private local one.

`ray job submit` sets RAY_ADDRESS for the driver. Without it we start a fresh local cluster on
127.0.0.1 rather than let `ray.init()` look for one: a stale address file left by an old
`ray start` makes that search hang, and a local run should not join someone else's cluster.
"""

from __future__ import annotations

import logging
import os

import ray


def connect_ray() -> None:
    """Initialise Ray once per process (a no-op when it already is, e.g. in tests)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
