"""The whole job on one machine: plan -> generate -> train -> evaluate, on the bundled samples.

    python -m jobs.pipeline --out runs/demo                     # tiny teacher, CPU, minutes
    python -m jobs.pipeline --out runs/sd --model stable-diffusion-v1-5/stable-diffusion-v1-5

Each step is the same command a user runs on a cluster (`python -m jobs.generate`, `jobs.train`,
`jobs.evaluate`), started here in turn with arguments derived from these few. Re-running the
same command finishes what is missing: generation skips stored pairs, training resumes (a
finished training run says so and exits).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from common.cli import USER_ERROR, VERBOSE, positive_int, run_cli
from common.errors import UserError
from common.inputs import expand_images
from jobs import generate as generate_job
from student.train_config import config_from_args
from teacher_workers.options import teacher_options

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PRESETS = ("tiny", "sd15-random")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[VERBOSE],
    )
    parser.add_argument("--out", default="runs/demo", help="run root (local dir or URL)")
    parser.add_argument(
        "--samples",
        default=str(SAMPLES),
        help="folder with content/, faces/, styles/, golden/{content,styles}/",
    )
    parser.add_argument("--model", default="tiny", help="teacher: tiny | sd15-random | HF id | dir")
    parser.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        help="teacher resolution (default 128 for tiny, else 512)",
    )
    parser.add_argument("--steps", type=positive_int, default=50, help="DDIM steps")
    parser.add_argument("--epochs", type=positive_int, default=4, help="student epochs")
    parser.add_argument("--train-workers", type=positive_int, default=1)
    parser.add_argument(
        "--crop-size",
        type=positive_int,
        default=None,
        help="training crop (default: the teacher resolution)",
    )
    parser.add_argument(
        "--student-layers",
        type=positive_int,
        default=6,
        help="encoder and decoder layers of the student (6 = STTR)",
    )
    parser.add_argument("--gpu", action="store_true", help="train on GPUs (one per worker)")
    parser.add_argument("--name", default="demo", help="training run name")
    parser.add_argument(
        "--vgg-weights",
        help="VGG19 weights for the evaluation (see jobs.evaluate; default: 'random' with the "
        f"random-weight teachers {', '.join(PRESETS)}, else torchvision's)",
    )
    return parser.parse_args(argv)


def sample_sets(folder: Path) -> dict[str, Path]:
    """The five sample folders; a missing or empty one is a `UserError` before any work."""
    sets = {
        "content": folder / "content",
        "faces": folder / "faces",
        "styles": folder / "styles",
        "golden-content": folder / "golden" / "content",
        "golden-styles": folder / "golden" / "styles",
    }
    for role, path in sets.items():
        expand_images([str(path)], {}, role)
    return sets


def flags(**options: object) -> list[str]:
    """`--key value` arguments from keywords (underscores become dashes)."""
    return [
        part
        for key, value in options.items()
        for part in (f"--{key.replace('_', '-')}", str(value))
    ]


def steps(args: argparse.Namespace, sets: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(name, argv) of each step, in order."""
    resolution = args.resolution or (128 if args.model == "tiny" else 512)
    generate = flags(
        content=sets["content"],
        faces=sets["faces"],
        styles=sets["styles"],
        golden_content=sets["golden-content"],
        golden_styles=sets["golden-styles"],
        planner="recipe",
        combinations=1,
        out=args.out,
        model=args.model,
        resolution=resolution,
        steps=args.steps,
    )
    train = flags(
        data=args.out,
        name=args.name,
        epochs=args.epochs,
        workers=args.train_workers,
        crop_size=args.crop_size or resolution,
        batch_size=4,
        loss="l1",
        init="imagenet",
        enc_layers=args.student_layers,
        dec_layers=args.student_layers,
    ) + (["--gpu"] if args.gpu else [])
    # a random-weight teacher's targets are not art, so no pretrained network is needed to
    # measure them (metrics.json says which weights were random)
    vgg = args.vgg_weights or ("random" if args.model in PRESETS else None)
    evaluate = (
        flags(data=args.out, student=f"{args.out}/train/{args.name}", name="golden")
        + (["--vgg-weights", vgg] if vgg else [])
        + (["--lpips-weights", "random"] if args.model in PRESETS else [])
    )
    return [("generate", generate), ("train", train), ("evaluate", evaluate)]


def check_steps(plan: list[tuple[str, list[str]]]) -> None:
    """Validate every step's options as the step itself will, before the first step runs: a
    bad value ends the pipeline before generation, not after it."""
    argv = dict(plan)
    generate = generate_job.parse_args(argv["generate"])
    teacher_options(generate)
    train = config_from_args(argv["train"])
    if train.crop_size > generate.resolution:
        raise UserError(
            f"--crop-size {train.crop_size}: larger than the teacher resolution "
            f"{generate.resolution}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sets = sample_sets(Path(args.samples))
    plan = steps(args, sets)
    check_steps(plan)
    for name, step_argv in plan:
        print(f"\n== {name}: python -m jobs.{name} {' '.join(step_argv)}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"jobs.{name}", *step_argv])
        if code == USER_ERROR:
            return code  # the step has printed its one `error:` line
        if code:
            raise UserError(f"step {name} failed (exit code {code}); fix it and run this again")
    print(
        f"\ndone. pictures: {args.out}/eval/golden/contact_sheet.png and curves.png; "
        f"metrics: {args.out}/eval/golden/metrics.json"
    )
    return 0


# `styleid-pipeline` (pyproject.toml [project.scripts]) and `python -m jobs.pipeline`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
