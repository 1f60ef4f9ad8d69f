r"""Serve a trained student over HTTP with Ray Serve: a web page, an API, autoscaling replicas.

    python -m jobs.serve                  # the shipped MicroAST weights at http://127.0.0.1:8000/
    python -m jobs.serve --student RUN/train/NAME
    python -m jobs.serve --student s3://bucket/run/train/l1 --replicas 1:4 --gpus-per-replica 1
    ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.serve --student s3://bucket/run/train/l1 --host 0.0.0.0 --detach

The page at / uploads a photo and a style (or picks one of --gallery's); POST /stylize is the
API (OpenAPI docs at /docs). Replicas scale between --replicas MIN:MAX, requests that arrive
together share a model call (--batch-size), and past --max-queued-requests a client gets a
quick 503. Without --detach the command serves until Ctrl-C; with it, the app stays on the
cluster after the job ends (`serve shutdown` stops it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated

import tyro

from common.cli import StorageJobArgs, check_number, parse, run_cli, verbose
from serving.config import ServeConfig, serve_logging
from serving.styles import read_gallery

APP = "stylize"


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.serve`."""

    serve: Annotated[ServeConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=ServeConfig)
    host: str = "127.0.0.1"
    """address the HTTP proxy listens on (0.0.0.0: every interface)"""
    port: int = 8000
    """HTTP port"""
    detach: bool = False
    """deploy and return; the app keeps serving on the cluster"""

    def __post_init__(self) -> None:
        check_number("--port", self.port, 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.serve", __doc__)
    from student.checkpoint import check_student_source  # torch: not for --help

    # what a replica would fail on, found here as one line before Ray starts
    check_student_source(args.serve.student, args.storage)
    read_gallery(args.serve.gallery, args.storage)

    from ray import serve

    from common.ray_connect import connect_ray
    from serving.app import build

    connect_ray()
    logs = serve_logging(verbose())
    logging.getLogger("ray.serve").setLevel(logs["log_level"])  # the driver's side of Serve
    serve.start(http_options={"host": args.host, "port": args.port}, logging_config=logs)
    serve.run(build(args.serve, args.storage), name=APP, route_prefix="/", logging_config=logs)
    print(f"serving {args.serve.student} at http://{args.host}:{args.port}/ (API: /docs)")
    if args.detach:
        return 0
    print("Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


cli = partial(run_cli, main)  # the console script `styleid-serve` (pyproject.toml)

if __name__ == "__main__":
    cli()
