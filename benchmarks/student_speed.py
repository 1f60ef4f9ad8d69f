"""Student speed: inference images/s (eager PyTorch vs ONNX Runtime) and training images/s
with 1 and 2 Ray Train workers.

    python -m benchmarks.student_speed --out benchmarks/results/student_cpu.json
    python -m benchmarks.student_speed --device cuda --skip-training   # on a GPU machine

Inference uses the full STTR (random weights: speed does not depend on them). Training runs
`python -m jobs.train` on a small generated run and reads images/s of its last epoch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.machine import describe, report
from student.export import export_onnx
from student.model import STTRConfig, build_sttr
from tests.synthetic_run import write_synthetic_run

ROOT = Path(__file__).resolve().parents[1]


def per_second(fn, repeats: int, device: torch.device) -> float:
    """Calls per second of `fn` after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def inference(sizes: list[int], device: torch.device, repeats: int, dtype: torch.dtype) -> dict:
    """Images/s at each size, eager and (on the CPU) ONNX Runtime, batch 1."""
    import onnxruntime

    model = build_sttr(STTRConfig(), init="scratch").eval().to(device, dtype)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = f"{folder}/sttr.onnx"
        if device.type == "cpu":
            export_onnx(model, onnx_path)
            session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        for size in sizes:
            x = torch.randn(1, 3, size, size, device=device, dtype=dtype)
            with torch.inference_mode():
                eager = per_second(lambda x=x: model(x, x), repeats, device)
            row = {"eager_images_per_s": eager}
            if device.type == "cpu":
                feed = {"content": x.numpy(), "style": x.numpy()}
                row["onnxruntime_images_per_s"] = per_second(
                    lambda feed=feed: session.run(None, feed), repeats, device
                )
                row["onnx_over_eager"] = row["onnxruntime_images_per_s"] / eager
            results[str(size)] = row
    return results


def training(workers: list[int], epochs: int, crop: int) -> dict:
    """Images/s of the last epoch of `jobs.train` with each worker count (full STTR, CPU)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_run(Path(folder), n_content=7, n_style=5, size=crop)
        for n in workers:
            name = f"bench{n}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "jobs.train",
                    "--data",
                    folder,
                    "--name",
                    name,
                    "--workers",
                    str(n),
                    "--epochs",
                    str(epochs),
                    "--crop-size",
                    str(crop),
                    "--batch-size",
                    "4",
                    "--init",
                    "scratch",
                    "--loader-workers",
                    "0",
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            records = [
                json.loads(line)
                for line in (Path(folder) / "train" / name / "metrics.jsonl")
                .read_text()
                .splitlines()
            ]
            results[str(n)] = {
                "images_per_s": records[-1]["images_per_s"],
                "crop": crop,
                "batch_per_worker": 4,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--train-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--train-crop", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    result = {
        "benchmark": "student_speed",
        **describe(device),
        "dtype": args.dtype,
        "parameters": sum(p.numel() for p in build_sttr(STTRConfig(), "scratch").parameters()),
        "inference_batch_1": inference(
            args.sizes, device, args.repeats, getattr(torch, args.dtype)
        ),
    }
    if not args.skip_training:
        result["training"] = training(args.train_workers, args.train_epochs, args.train_crop)
    report(result, args.out)


if __name__ == "__main__":
    main()
