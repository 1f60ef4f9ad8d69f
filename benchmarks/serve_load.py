"""Serving throughput and latency under closed-loop load, against the model called directly.

    python -m benchmarks.serve_load [--student CKPT] [--size 256] [--seconds 10] \
        [--out benchmarks/results/serve_cpu.json]

A private local Ray cluster serves the student (`serving.app`) on 127.0.0.1; for each setting
(1 or 2 replicas, dynamic batching off or on) closed-loop clients, 1, 4, 16 and 64 at once, each
send a request as soon as their last one is answered, for a fixed time: the same content and a
gallery style, at --size. Reported: images/s, latency p50/p95/p99 and the count of anything but
200. The ceiling is the same model in this process, on the same decoded images with the style
encoded once, for the same time, at its best thread count: what serving can at best reach.
Every request goes to loopback only, and each setting stops after --seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch

from benchmarks.machine import describe, report
from common.images import load_scaled
from common.storage import StorageOptions
from serving.config import GALLERY, ServeConfig
from student.checkpoint import AUTHORS_MICROAST, open_student
from student.inference import encode_style, for_inference, stylize

CONTENT = Path(__file__).resolve().parents[1] / "samples" / "content" / "03.png"
STYLE_ID = "05"
CONCURRENCY = (1, 4, 16, 64)
SETTINGS = ((1, 1), (1, 8), (2, 1), (2, 8))  # (replicas, batch size)


def direct_rates(student: str, size: int, seconds: float) -> dict[int, float]:
    """Images per second from `stylize` in this process (style encoded once, after a warm-up),
    with 1 torch thread up to one per core: the best of them is the ceiling (two spinning
    OpenMP threads can lose to one when anything else wants the cores)."""
    model = for_inference(open_student(student))
    content = load_scaled(CONTENT.read_bytes(), size)
    style = encode_style(model, load_scaled((Path(GALLERY) / f"{STYLE_ID}.png").read_bytes(), size))
    rates = {}
    for threads in range(1, (os.cpu_count() or 1) + 1):
        torch.set_num_threads(threads)
        stylize(model, content, style)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            stylize(model, content, style)
            done += 1
        rates[threads] = round(done / (time.perf_counter() - start), 3)
    return rates


def closed_loop(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` threads, each posting again as soon as it is answered, until `seconds` pass."""
    body = CONTENT.read_bytes()
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop:
                sent = time.perf_counter()
                response = session.post(
                    f"{url}/stylize",
                    files={"content": ("c.png", body)},
                    data={"style_id": STYLE_ID},
                    timeout=120,
                )
                with lock:
                    codes[response.status_code] += 1
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - sent)

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


def serve_setting(
    url: str, student: str, size: int, replicas: int, batch: int, seconds: float
) -> list[dict[str, Any]]:
    """Deploy one setting (the machine's cores split between the replicas), warm it, load it."""
    from ray import serve

    from serving.app import build

    config = ServeConfig(
        student=student,
        max_side=size,
        replicas=(replicas, replicas),
        cpus_per_replica=(os.cpu_count() or 1) / replicas,
        batch_size=batch,
        max_ongoing_requests=max(CONCURRENCY),
        max_queued_requests=4 * max(CONCURRENCY),  # no 503s: load below the overload limit
    )
    serve.delete("stylize")  # the last setting's replicas give their cores back first
    serve.run(build(config, StorageOptions()), name="stylize", route_prefix="/")
    closed_loop(url, 2 * replicas, min(seconds, 3))  # warm-up: each replica's first calls
    return [closed_loop(url, clients, seconds) for clients in CONCURRENCY]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default=AUTHORS_MICROAST)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out")
    args = parser.parse_args()

    import ray
    from ray import serve

    load_at_start = os.getloadavg()
    direct = direct_rates(args.student, args.size, args.seconds)
    ceiling = max(direct.values())
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    runs = []
    for replicas, batch in SETTINGS:
        url = f"http://127.0.0.1:{port}"
        for row in serve_setting(url, args.student, args.size, replicas, batch, args.seconds):
            runs.append({"replicas": replicas, "batch_size": batch, **row})
            print(runs[-1], flush=True)
    serve.shutdown()
    best = max(runs, key=lambda r: r["images_per_s"])
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
            "direct_images_per_s_by_threads": direct,
            "direct_images_per_s": ceiling,
            "runs": runs,
            "best": best,
            "best_over_direct": round(best["images_per_s"] / ceiling, 3),
            "p99_over_p50_at_4_clients": [round(r["p99_s"] / r["p50_s"], 2) for r in at4],
            "errors_total": sum(r["errors"] for r in runs),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
