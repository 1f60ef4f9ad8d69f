"""Serving throughput and latency under closed-loop load, against the model called directly.

    python -m benchmarks.serve_load [--student CKPT] [--size 256] [--seconds 10] \
        [--out benchmarks/results/serve_cpu.json]

A private local Ray cluster serves the student (`serving.app`) on 127.0.0.1; for each setting
(1 or 2 replicas, dynamic batching off or on) closed-loop clients, 1, 4, 16 and 64 at once, each
send a request as soon as their last one is answered, for a fixed time: the same content and a
gallery style, at --size. Reported: images/s, latency p50/p95/p99 and the count of anything but
200. The ceiling is the same model in this process, on the same decoded images with the style
encoded once, for the same time, at its best thread count, before serving and again after
(the best of all): what serving can at best reach. Beside it, the same with the request's image
codecs (decode the upload, encode the PNG answer): what serving adds beyond them.

This machine's speed drifts by up to a fifth over minutes, more than a ratio measured minutes
apart can tell from what serving costs. So the served/direct ratio is also measured paired:
--rounds times the sweep's best setting served for --seconds on a freshly started Ray, each
between two direct measures of the model at its best thread count with Ray stopped, and each
round's ratio is its served rate over the mean of the two direct rates around it.
Every request goes to loopback only, and each setting stops after --seconds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import serve
from urllib3 import encode_multipart_formdata

from benchmarks.machine import describe, report
from common.images import load_scaled
from common.ray_connect import LOCAL_RAY
from common.storage import StorageOptions
from serving.app import build, image_bytes
from serving.config import GALLERY, ServeConfig, serve_logging
from student.checkpoint import AUTHORS_MICROAST, open_student
from student.inference import encode_style, for_inference, stylize

CONTENT = Path(__file__).resolve().parents[1] / "samples" / "content" / "03.png"
STYLE_ID = "05"
APP = "stylize"
CONCURRENCY = (1, 4, 16, 64)
SETTINGS = ((1, 1), (1, 8), (2, 1), (2, 8))  # (replicas, batch size)


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second of `call` over `seconds`, after one untimed call."""
    call()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        done += 1
    return round(done / (time.perf_counter() - start), 3)


def direct_calls(student: str, size: int) -> dict[str, Callable[[], object]]:
    """The model called in this process, style encoded once: `stylize` alone ("model", the
    ceiling) and with what a request also does around it ("with_codecs": decode the uploaded
    PNG, encode the answer's)."""
    model = for_inference(open_student(student))
    data = CONTENT.read_bytes()
    content = load_scaled(data, size)
    style = encode_style(model, load_scaled((Path(GALLERY) / f"{STYLE_ID}.png").read_bytes(), size))
    return {
        "model": lambda: stylize(model, content, style),
        "with_codecs": lambda: image_bytes(stylize(model, load_scaled(data, size), style), "png"),
    }


def direct_rates(
    calls: dict[str, Callable[[], object]], seconds: float
) -> dict[str, dict[int, float]]:
    """Images per second of each call with 1 torch thread up to one per core. The best thread
    count counts (two spinning OpenMP threads can lose to one when anything else wants the
    cores)."""
    rates: dict[str, dict[int, float]] = {name: {} for name in calls}
    for threads in range(1, (os.cpu_count() or 1) + 1):
        torch.set_num_threads(threads)
        for name, call in calls.items():
            rates[name][threads] = rate(call, seconds)
    return rates


def closed_loop(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` threads, each posting again as soon as it is answered, until `seconds` pass.
    The request body is encoded once and each thread keeps one connection: the load client
    shares the cores with the service, so it spends as little of them as it can."""
    body, content_type = encode_multipart_formdata(
        {"content": ("c.png", CONTENT.read_bytes(), "image/png"), "style_id": STYLE_ID}
    )
    address = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            connection.request("POST", "/stylize", body, {"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            with lock:
                codes[response.status] += 1
                if response.status == 200:
                    latencies.append(time.perf_counter() - sent)
        connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies else (np.nan,) * 3
    return {
        "clients": clients,
        "images_per_s": round(len(latencies) / wall, 3),
        "p50_s": round(float(p50), 3),
        "p95_s": round(float(p95), 3),
        "p99_s": round(float(p99), 3),
        "ok": len(latencies),
        "errors": sum(n for code, n in codes.items() if code != 200),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deploy(url: str, student: str, size: int, replicas: int, batch: int, seconds: float) -> None:
    """Deploy one setting (the machine's cores split between the replicas) and warm it."""
    config = ServeConfig(
        student=student,
        max_side=size,
        replicas=(replicas, replicas),
        cpus_per_replica=(os.cpu_count() or 1) / replicas,
        batch_size=batch,
        max_ongoing_requests=max(CONCURRENCY),
        max_queued_requests=4 * max(CONCURRENCY),  # no 503s: load below the overload limit
    )
    serve.delete(APP)  # the last setting's replicas give their cores back first
    app = build(config, StorageOptions())
    serve.run(app, name=APP, route_prefix="/", logging_config=serve_logging(False))
    closed_loop(url, 2 * replicas, min(seconds, 3))  # warm-up: each replica's first calls


def serve_setting(
    url: str, student: str, size: int, replicas: int, batch: int, seconds: float
) -> list[dict[str, Any]]:
    """Deploy one setting, load it at each concurrency."""
    deploy(url, student, size, replicas, batch, seconds)
    return [closed_loop(url, clients, seconds) for clients in CONCURRENCY]


@contextmanager
def serving() -> Iterator[str]:
    """A private local Ray with Serve listening on a free loopback port (its URL); all of it
    stopped on exit, so that what runs next has the machine to itself."""
    ray.init(address="local", **LOCAL_RAY)
    port = free_port()
    # logging as `jobs.serve` has it without --verbose: no line per request
    listen = {"host": "127.0.0.1", "port": port}
    serve.start(http_options=listen, logging_config=serve_logging(False))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def paired_rounds(
    model: Callable[[], object], best: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, float]]:
    """Served rate of the `best` setting alternated with the direct rate of `model`, measured
    with Ray stopped: direct, served, direct, served, ..., direct."""
    direct = [rate(model, args.seconds)]
    rounds = []
    for _ in range(args.rounds):
        with serving() as url:
            deploy(url, args.student, args.size, best["replicas"], best["batch_size"], args.seconds)
            served = closed_loop(url, best["clients"], args.seconds)["images_per_s"]
        direct.append(rate(model, args.seconds))
        around = (direct[-2] + direct[-1]) / 2
        rounds.append(
            {
                "direct_before": direct[-2],
                "served": served,
                "direct_after": direct[-1],
                "ratio": round(served / around, 3),
            }
        )
        print(rounds[-1], flush=True)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default=AUTHORS_MICROAST)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=5, help="paired direct/served rounds")
    parser.add_argument("--out")
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    calls = direct_calls(args.student, args.size)
    direct_before = direct_rates(calls, args.seconds)
    runs = []
    with serving() as url:
        for replicas, batch in SETTINGS:
            for row in serve_setting(url, args.student, args.size, replicas, batch, args.seconds):
                runs.append({"replicas": replicas, "batch_size": batch, **row})
                print(runs[-1], flush=True)
    best = max(runs, key=lambda r: r["images_per_s"])
    model_rates = direct_before["model"]
    paired_threads = max(model_rates, key=model_rates.get)
    torch.set_num_threads(paired_threads)
    paired = paired_rounds(calls["model"], best, args)
    # the ceiling is the best direct rate measured before or after serving: the unpaired
    # ratio is never flattered by a slow moment
    direct_after = direct_rates(calls, args.seconds)
    ceiling = {
        name: max(*direct_before[name].values(), *direct_after[name].values())
        for name in direct_before
    }
    at4 = [r for r in runs if r["clients"] == 4]
    report(
        {
            "benchmark": "serve_load",
            "machine": describe(torch.device("cpu")),
            "load_average_at_end": os.getloadavg(),
            "student": args.student,
            "size": args.size,
            "seconds_per_point": args.seconds,
            "load_average_at_start": load_at_start,
            "direct_images_per_s_by_threads": {"before": direct_before, "after": direct_after},
            "direct_images_per_s": ceiling["model"],
            "direct_with_codecs_images_per_s": ceiling["with_codecs"],
            "runs": runs,
            "best": best,
            "best_over_direct": round(best["images_per_s"] / ceiling["model"], 3),
            "best_over_direct_with_codecs": round(best["images_per_s"] / ceiling["with_codecs"], 3),
            "paired": {
                "setting": {k: best[k] for k in ("replicas", "batch_size", "clients")},
                "torch_threads_direct": paired_threads,
                "rounds": paired,
                "median_ratio": float(np.median([r["ratio"] for r in paired])),
            },
            "p99_over_p50_at_4_clients": [round(r["p99_s"] / r["p50_s"], 2) for r in at4],
            "errors_total": sum(r["errors"] for r in runs),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
