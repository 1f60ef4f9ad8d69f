"""Student inference speed per path, and each path's output quality against fp32 PyTorch, for
STTR and MicroAST in one run (so their ratio is measured under the same conditions).

    python -m benchmarks.student_speed --out benchmarks/results/student_cpu.json   # ~5 min
    python -m benchmarks.student_speed --device cuda --paths fp32 bf16-cl fp16-cl \
        bf16-cl-compile --train-steps 20 --out ...   # a GPU: inference and training steps
    python -m benchmarks.student_speed --training ...   # also Ray Train images/s (slow)

Paths: `fp32` (eager, NCHW: the reference), `fp32-cl` (channels-last), `fp32-cl-style-once`
(channels-last, the style encoded once as `jobs.stylize` does for a folder: the time per image
of a folder in one style), `bf16-cl` (channels-last under bfloat16 autocast: `jobs.stylize
--precision bf16`), `fp16-cl` (float16 autocast), `bf16-cl-compile` (`bf16-cl` after
torch.compile: `jobs.stylize --compile`), `onnxruntime` (the fp32 ONNX export with every graph
optimisation, CPU only), `onnxruntime-int8` (that export statically quantized to int8) and
`fp32-cl-compile-style-once` (`fp32-cl-style-once` after torch.compile). Every
path gets one warm-up call per size, then the paths take turns, `--repeats` rounds, so a busy
machine slows them alike; the best call of each counts (seconds per image, batch 1) along with
its process CPU time divided by the threads, which a shared machine disturbs less than wall
time. Quality: each path stylizes the golden set (`samples/golden`, every content with every
style) at each size; PSNR against fp32, bounded at 35 dB for STTR and 40 dB for MicroAST. The
full STTR has random weights here (speed does not depend on them; seeded, so runs compare);
MicroAST has its authors' released weights, so its quality is measured on real stylizations.
Each size also gets its GFLOP per image (PyTorch's FLOP counter), whole and with the style
encoded once, and the run the device's fp32 matmul rate: together, the least time any fp32 path
could take. `microast_vs_sttr` divides STTR's seconds per image by MicroAST's, on the path
`jobs.stylize --student` takes by default (`fp32-cl-style-once`) and on each one's fastest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path

import torch

from benchmarks.machine import describe, report
from benchmarks.synthetic_run import write_synthetic_run
from common.images import load_square
from student.export import export_onnx
from student.flops import gflop
from student.image_space import ImageSpace
from student.inference import for_inference, resolve_precision
from student.losses import build_loss
from student.microast import MicroASTConfig, build_microast
from student.model import STTRConfig, build_sttr

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "samples" / "golden"
QUALITY_BOUND_DB = {"sttr": 35.0, "microast": 40.0}
STYLIZE_PATH = "fp32-cl-style-once"  # what `jobs.stylize --student` runs on an AVX2 CPU
PATHS = (
    "fp32",
    "fp32-cl",
    "fp32-cl-style-once",
    "bf16-cl",
    "fp16-cl",
    "bf16-cl-compile",
    "onnxruntime",
    "onnxruntime-int8",
    "fp32-cl-compile-style-once",
)
CPU_PATHS = tuple(name for name in PATHS if "compile" not in name and "fp16" not in name)
MICROAST_PATHS = (
    "fp32",
    "fp32-cl",
    "fp32-cl-style-once",
    "fp32-cl-compile-style-once",
    "onnxruntime",
)

Runner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build(arch: str, device: torch.device) -> torch.nn.Module:
    """The benchmarked student in eval mode: a seeded random full STTR, or MicroAST with its
    authors' released weights."""
    torch.manual_seed(0)
    if arch == "microast":
        model = build_microast(MicroASTConfig(), init="authors")
    else:
        model = build_sttr(STTRConfig(), init="scratch")
    return model.eval().to(device)


def runners(
    names: list[str], model: torch.nn.Module, device: torch.device, threads: int, folder: str
) -> dict:
    """One callable per path: (content, style) [1, 3, H, W] in the student's pixel space ->
    fp32 output."""
    layout = {"memory_format": torch.channels_last}

    def channels_last(compiled: bool = False) -> torch.nn.Module:
        copy = for_inference(deepcopy(model))
        if compiled:
            copy.compile(dynamic=False)  # one graph per size: no slow symbolic shapes
        return copy

    def eager(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return model(c, s).float()

    def autocast(module: torch.nn.Module, dtype: torch.dtype | None) -> Runner:
        def run(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype or torch.float32, enabled=dtype is not None):
                return module(c.contiguous(**layout), s.contiguous(**layout)).float()

        return run

    def style_once(module: torch.nn.Module) -> Runner:
        """As `jobs.stylize` on a folder: the style is encoded when it changes, not per image."""
        last: list = [None, None]  # the style tensor, its encoding

        def run(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if last[0] is not s:
                last[:] = [s, module.encode_style(s.contiguous(**layout))]
            return module(c.contiguous(**layout), last[1]).float()

        return run

    makers: dict[str, Callable[[], Runner]] = {
        "fp32": lambda: eager,
        "fp32-cl": lambda: autocast(channels_last(), None),
        "fp32-cl-style-once": lambda: style_once(channels_last()),
        "bf16-cl": lambda: autocast(channels_last(), torch.bfloat16),
        "fp16-cl": lambda: autocast(channels_last(), torch.float16),
        "bf16-cl-compile": lambda: autocast(channels_last(compiled=True), torch.bfloat16),
        "onnxruntime": lambda: onnx_runner(model, threads, folder),
        "onnxruntime-int8": lambda: onnx_runner(model, threads, folder, int8=True),
        "fp32-cl-compile-style-once": lambda: style_once(channels_last(compiled=True)),
    }
    return {name: makers[name]() for name in names}


def onnx_runner(model: torch.nn.Module, threads: int, folder: str, int8: bool = False) -> Runner:
    """The fp32 export run by ONNX Runtime (CPU), all graph optimisations, `threads` threads;
    with `int8`, that export statically quantized first (`int8_export`)."""
    import onnxruntime

    path = f"{folder}/student.onnx"
    Path(path).write_bytes(export_onnx(model))
    if int8:
        path = int8_export(path, folder, model.space)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        feed = {"content": c.cpu().numpy(), "style": s.cpu().numpy()}
        return torch.from_numpy(session.run(None, feed)[0])

    return run


def int8_export(path: str, folder: str, space: ImageSpace) -> str:
    """ONNX Runtime's static int8 quantization of the export at `path` (QDQ, per-channel int8
    weights, uint8 activations), calibrated on the golden pairs at 256 px: the set the quality
    is then measured on, so the PSNR is a best case."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cpu = torch.device("cpu")
    contents, styles = (golden(name, 256, cpu, space) for name in ("content", "styles"))
    feeds = iter([{"content": c.numpy(), "style": s.numpy()} for c in contents for s in styles])

    class GoldenPairs(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return next(feeds, None)

    quant_pre_process(path, f"{folder}/pre.onnx", skip_symbolic_shape=True)
    out = f"{folder}/student-int8.onnx"
    quantize_static(
        f"{folder}/pre.onnx",
        out,
        GoldenPairs(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,  # the default int8 ran 1.5x slower here (AVX2)
        weight_type=QuantType.QInt8,
    )
    return out


def timed(fn: Runner, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(x, x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def speed(paths: dict, size: int, device: torch.device, repeats: int, threads: int) -> dict:
    """Best wall and CPU seconds per image of each path at `size`, the paths taking turns."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)).to(device)
    for fn in paths.values():
        fn(x, x)  # warm-up: kernel selection, allocations, ONNX Runtime's first-run set-up
    best = {name: [math.inf, math.inf] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            wall, cpu = timed(fn, x, device)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return {
        name: {"seconds_per_image": wall, "cpu_seconds_per_image_per_thread": cpu / threads}
        for name, (wall, cpu) in best.items()
    }


def quality(paths: dict, size: int, device: torch.device, space: ImageSpace) -> dict:
    """PSNR (dB, images in [0, 1]) of each path against `fp32`, worst over the golden pairs."""
    contents, styles = (golden(folder, size, device, space) for folder in ("content", "styles"))
    worst = dict.fromkeys(paths, math.inf)
    with torch.inference_mode():
        for content in contents:
            for style in styles:
                reference = unit(paths["fp32"](content, style), space)
                for name, fn in paths.items():
                    if name != "fp32":
                        output = unit(fn(content, style), space)
                        worst[name] = min(worst[name], psnr(reference, output))
    return {name: value for name, value in worst.items() if name != "fp32"}


def golden(folder: str, size: int, device: torch.device, space: ImageSpace) -> list[torch.Tensor]:
    """The golden set's images in `folder`, centre squares of `size`, in the student's space."""
    return [
        space.normalize(load_square(path.read_bytes(), size))[None].to(device)
        for path in sorted((GOLDEN / folder).glob("*.png"))
    ]


def unit(output: torch.Tensor, space: ImageSpace) -> torch.Tensor:
    """Model output back to [0, 1] pixels, as `student.inference.stylize` returns them."""
    return space.denormalize(output.float()).clamp(0, 1)


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    mse = float(((reference - other) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def work(model: torch.nn.Module, size: int, device: torch.device, gflop_per_s: float) -> dict:
    """GFLOP of one image at `size` (content and style), and with the style encoded once,
    counted by PyTorch's FLOP counter (`student.flops`); and the seconds each would take at
    `gflop_per_s`, the device's fp32 matmul rate."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    whole = gflop(lambda: model(x, x))
    once = whole - gflop(lambda: model.encode_style(x))
    return {
        "gflop_per_image": whole,
        "gflop_per_image_style_once": once,
        "fp32_floor_seconds": whole / gflop_per_s,
        "fp32_floor_seconds_style_once": once / gflop_per_s,
    }


def matmul_gflops(device: torch.device) -> float:
    """The device's fp32 matmul rate (GFLOP/s, best of 3 [2048, 2048] products): with the
    counted GFLOP, the least time any fp32 path could take."""
    a = torch.randn(2048, 2048, device=device)
    a @ a  # warm-up
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def inference(
    arch: str, names: list[str], args: argparse.Namespace, device: torch.device, rate: float
) -> dict:
    """Speed and quality of every path at every size, and the fastest path within the bound."""
    model = build(arch, device)
    bound = QUALITY_BOUND_DB[arch]
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        paths = runners(names, model, device, args.threads, folder)
        results = {}
        for size in args.sizes:
            print(f"{arch} at {size} px", file=sys.stderr, flush=True)
            row = speed(paths, size, device, args.repeats, args.threads)
            for name, value in quality(paths, size, device, model.space).items():
                row[name]["psnr_vs_fp32_db"] = value
            acceptable = [
                name
                for name, value in row.items()
                if value.get("psnr_vs_fp32_db", math.inf) >= bound
            ]
            fastest = min(acceptable, key=lambda name: row[name]["seconds_per_image"])
            base = row["fp32"]["seconds_per_image"]
            for value in row.values():
                value["speedup_vs_fp32"] = base / value["seconds_per_image"]
            results[str(size)] = {
                "paths": row,
                f"fastest_within_{bound:.0f}_db": fastest,
                **work(model, size, device, rate),
            }
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "inference_batch_1": results,
    }


def ratios(sttr: dict, microast: dict) -> dict:
    """Per size: STTR's seconds per image over MicroAST's on the default `jobs.stylize` path
    and on each one's fastest path within its quality bound; and how many times its fp32 FLOP
    floor MicroAST's default path takes (style encoded once)."""
    out = {}
    for size, micro in microast["inference_batch_1"].items():
        seconds = micro["paths"][STYLIZE_PATH]["seconds_per_image"]
        row = {
            "microast_stylize_path_seconds": seconds,
            "microast_times_fp32_floor": seconds / micro["fp32_floor_seconds_style_once"],
        }
        big = sttr["inference_batch_1"].get(size)
        if big is not None:
            row["sttr_stylize_path_seconds"] = big["paths"][STYLIZE_PATH]["seconds_per_image"]
            row["speedup_stylize_path"] = row["sttr_stylize_path_seconds"] / seconds
            row["speedup_fastest_paths"] = fastest_seconds(big) / fastest_seconds(micro)
        out[size] = row
    return out


def fastest_seconds(entry: dict) -> float:
    """Seconds per image of a size's fastest path within its quality bound."""
    name = next(value for key, value in entry.items() if key.startswith("fastest_within"))
    return entry["paths"][name]["seconds_per_image"]


def train_steps(device: torch.device, steps: int, shapes: list[str], compile: bool) -> dict:
    """Training images/s of the bare step (forward, the l1 and l3 losses, backward, Adam) under
    the precision `jobs.train` picks on `device`, for each BATCHxCROP shape: the rate the input
    pipeline must feed one accelerator at (random VGG19: speed does not depend on weights)."""
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(training_precision(device))
    results = {}
    for loss_name in ("l1", "l3"):
        torch.manual_seed(0)
        model = build_sttr(STTRConfig(), init="scratch").to(device).train()
        if compile:
            model.compile()
        loss_fn = build_loss(loss_name, vgg_weights="random").to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        for shape in shapes:
            batch, crop = (int(x) for x in shape.split("x"))
            x = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(crop))
            x = x.to(device)
            first = time.perf_counter()
            for _ in range(3):
                train_step(model, loss_fn, optimizer, x, amp)  # warm-up (and compilation)
            if device.type == "cuda":
                torch.cuda.synchronize()
            warm_up = time.perf_counter() - first
            start = time.perf_counter()
            for _ in range(steps):
                train_step(model, loss_fn, optimizer, x, amp)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            results[f"{loss_name} {shape}"] = {
                "images_per_s": batch * steps / seconds,
                "warm_up_seconds": warm_up,
                "precision": str(amp or "fp32"),
                "compile": compile,
            }
            print(loss_name, shape, results[f"{loss_name} {shape}"], flush=True)
    return results


def train_step(model, loss_fn, optimizer, x: torch.Tensor, amp: torch.dtype | None) -> None:
    """One step on `x` as content, style and target (the cost does not depend on the values)."""
    with torch.autocast(x.device.type, amp or torch.float32, enabled=amp is not None):
        loss = loss_fn(model(x, x), x).total
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def training_precision(device: torch.device) -> str:
    """`jobs.train --precision auto`: bf16 on GPUs that have it, else fp16; fp32 on CPU."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def training(workers: list[int], epochs: int, crop: int) -> dict:
    """Images/s of the last epoch of `jobs.train` with each worker count (full STTR, CPU)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_run(Path(folder), n_content=7, n_style=5, size=crop)
        for n in workers:
            name = f"bench{n}"
            command = [sys.executable, "-m", "jobs.train", "--data", folder, "--name", name]
            command += ["--workers", str(n), "--epochs", str(epochs), "--crop-size", str(crop)]
            command += ["--batch-size", "4", "--init", "scratch", "--loader-workers", "0"]
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            metrics = Path(folder) / "train" / name / "metrics.jsonl"
            records = [json.loads(line) for line in metrics.read_text().splitlines()]
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
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument(
        "--archs", nargs="+", choices=QUALITY_BOUND_DB, default=["sttr", "microast"]
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        help="STTR's paths; default: all, less bf16-cl where bf16 is emulated (`--precision auto` "
        "would not take it: tens of seconds per 512 px image on an AVX2 CPU)",
    )
    parser.add_argument(
        "--microast-paths",
        nargs="+",
        choices=PATHS,
        help=f"MicroAST's paths; default: {' '.join(MICROAST_PATHS)}, and bf16-cl where bf16 is "
        "native",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up")
    parser.add_argument(
        "--train-steps", type=int, default=0, help="also time this many bare training steps"
    )
    parser.add_argument("--train-shapes", nargs="+", default=["8x256", "32x256", "8x512"])
    parser.add_argument("--train-compile", action="store_true", help="torch.compile the student")
    parser.add_argument("--training", action="store_true", help="also time jobs.train (slow)")
    parser.add_argument("--train-workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--train-crop", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    bf16 = resolve_precision("auto", device) == "bf16"
    if args.paths is None:
        args.paths = [name for name in CPU_PATHS if bf16 or name != "bf16-cl"]
    if args.microast_paths is None:
        args.microast_paths = [*MICROAST_PATHS, *(["bf16-cl"] if bf16 else [])]
    if "fp32" not in args.paths or "fp32" not in args.microast_paths:
        parser.error("--paths and --microast-paths must include fp32, the reference")
    result = {
        "benchmark": "student_speed",
        **describe(device),
        "threads": args.threads,
        "method": f"one warm-up call per path and size, then {args.repeats} rounds with the "
        "paths taking turns; best call per path; batch 1, random-weight full STTR, MicroAST "
        "with its authors' weights; the students one after the other",
        "quality": "worst PSNR over the golden set's content x style pairs, against fp32",
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "fp32_matmul_gflop_per_s": (rate := matmul_gflops(device)),
    }
    names = {"sttr": args.paths, "microast": args.microast_paths}
    students = {arch: inference(arch, names[arch], args, device, rate) for arch in args.archs}
    result["students"] = students
    if len(students) == 2:
        result["microast_vs_sttr"] = ratios(students["sttr"], students["microast"])
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.train_steps:
        result["training_steps"] = train_steps(
            device, args.train_steps, args.train_shapes, args.train_compile
        )
    if args.training:
        result["training"] = training(args.train_workers, args.train_epochs, args.train_crop)
    report(result, args.out)


if __name__ == "__main__":
    main()
