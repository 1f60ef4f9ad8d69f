"""The whole job on one machine: plan -> generate -> train -> evaluate, on the bundled samples.

    python -m jobs.pipeline --out runs/demo                     # stand-in teacher, CPU, minutes
    python -m jobs.pipeline --out runs/demo --teacher styleid   # StyleID on a tiny random SD 1.5
    python -m jobs.pipeline --out runs/sd --model stable-diffusion-v1-5/stable-diffusion-v1-5

Without SD 1.5 weights (a preset --model) the teacher is, unless --teacher says otherwise, a
trained network standing in for StyleID: the MicroAST authors' released weights (`--teacher
student`), which stylize for real, so the demo's student visibly learns something; the student
is then a MicroAST trained from scratch (not from the teacher's own weights).

Each step is the same command a user runs on a cluster (`python -m jobs.generate`, `jobs.train`,
`jobs.evaluate`), started here in turn with arguments derived from these few. Re-running the
same command finishes what is missing: generation skips stored pairs, training resumes (a
finished training run says so and exits).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import tyro

from common.cli import USER_ERROR, JobArgs, choice_flag, parse, run_cli
from common.errors import UserError
from common.inputs import expand_images
from jobs import generate as generate_job
from jobs.train import config_from_args
from student.model_config import STTRConfig
from student.train_config import TrainConfig
from teacher_workers.model_choice import PRESETS
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig

# the bundled samples: jobs/samples links to the checkout's samples/, and the wheel carries them
SAMPLES = Path(__file__).resolve().parent / "samples"
# folders below --samples, each the input of the jobs.generate flag of its name (--golden-content)
SAMPLE_SETS = ("content", "faces", "styles", "golden/content", "golden/styles")
TINY_RESOLUTION = 128  # the tiny teacher's demo size: minutes on a CPU
DEMO_TEACHERS = ("student", "styleid")


@dataclass(frozen=True)
class StudentPlan:
    """The student the demo trains for a teacher, and how (each a jobs.train flag)."""

    arch: str
    epochs: int
    lr: float
    lr_patience: int = TrainConfig.lr_patience


# STTR, as always, for StyleID; for the stand-in teacher a MicroAST from scratch, whose 0.47M
# parameters learn the teacher's colours and textures within minutes on a CPU
STUDENT_PLANS = {
    "styleid": StudentPlan("sttr", 4, TrainConfig.lr),
    "student": StudentPlan("microast", 24, 2e-3, lr_patience=2),
}


@dataclass(frozen=True, kw_only=True)
class Args(JobArgs):
    """The flags of `python -m jobs.pipeline`; defaults shared with a step are the step's."""

    out: str = "runs/demo"
    """run root (local dir or URL)"""
    samples: str = str(SAMPLES)
    """folder with content/, faces/, styles/, golden/{content,styles}/"""
    model: str = TeacherOptions.model
    """diffusion teacher: tiny | sd15-random | HF id | dir"""
    teacher: Annotated[
        str | None,
        choice_flag("--teacher", DEMO_TEACHERS),
        tyro.conf.arg(
            help="student: the MicroAST authors' weights as a stand-in teacher; styleid: StyleID "
            "on --model (none: student for a preset --model such as tiny, else styleid)"
        ),
    ] = None
    resolution: Annotated[
        int | None,
        tyro.conf.arg(
            help=f"teacher resolution (none: {TINY_RESOLUTION} for tiny, else "
            f"{StyleIDConfig.resolution})"
        ),
    ] = None
    steps: int = StyleIDConfig.steps
    """DDIM steps"""
    epochs: Annotated[
        int | None,
        tyro.conf.arg(
            help=f"student epochs (none: {STUDENT_PLANS['student'].epochs} with the stand-in "
            f"teacher, {STUDENT_PLANS['styleid'].epochs} with StyleID)"
        ),
    ] = None
    lr: Annotated[
        float | None,
        tyro.conf.arg(
            help=f"student learning rate (none: {STUDENT_PLANS['student'].lr} with the stand-in "
            f"teacher, {STUDENT_PLANS['styleid'].lr} with StyleID)"
        ),
    ] = None
    train_workers: int = TrainConfig.workers
    """Ray Train workers"""
    crop_size: int | None = None
    """training crop (none: the teacher resolution)"""
    student_layers: int = STTRConfig.enc_layers
    """encoder and decoder layers of an STTR student (6 = STTR)"""
    gpu: bool = TrainConfig.gpu
    """train on GPUs (one per worker)"""
    name: str = "demo"
    """training run name"""
    vgg_weights: str | None = None
    """VGG19 weights for jobs.evaluate (none: 'random' for tiny/sd15-random, else the hub's)"""


def flags(**options: object) -> list[str]:
    """`--key value` arguments from keywords (underscores become dashes)."""
    pairs = ((f"--{key.replace('_', '-')}", str(value)) for key, value in options.items())
    return [part for pair in pairs for part in pair]


def chosen_teacher(args: Args) -> str:
    """--teacher, or its default: the stand-in without SD 1.5 weights, else StyleID."""
    return args.teacher or ("student" if args.model in PRESETS else "styleid")


def steps(args: Args) -> list[tuple[str, list[str]]]:
    """(name, argv) of each step, in order. Generation's and training's options are parsed here
    as those steps will: a bad value (or a missing sample folder) ends the pipeline before
    generation, not after it."""
    sets = {name.replace("/", "_"): Path(args.samples) / name for name in SAMPLE_SETS}
    for flag, folder in sets.items():
        expand_images([str(folder)], {}, flag.replace("_", "-"))
    teacher = chosen_teacher(args)
    default = TINY_RESOLUTION if args.model == "tiny" else StyleIDConfig.resolution
    resolution = args.resolution or default
    plan = STUDENT_PLANS[teacher]
    crop_size = args.crop_size or resolution
    if crop_size > resolution:
        raise UserError(f"--crop-size {crop_size}: larger than the teacher resolution {resolution}")
    generate = flags(
        **sets,
        planner="recipe",
        combinations=1,
        out=args.out,
        teacher=teacher,
        model=args.model,  # checked (and recorded) whichever teacher runs
        resolution=resolution,
        steps=args.steps,
    )
    train = flags(
        data=args.out,
        name=args.name,
        epochs=args.epochs or plan.epochs,
        lr=args.lr or plan.lr,
        workers=args.train_workers,
        crop_size=crop_size,
        batch_size=4,
        loss=TrainConfig.loss,
        arch=plan.arch,
        lr_patience=plan.lr_patience,
    ) + (["--gpu"] if args.gpu else [])
    if plan.arch == "sttr":
        train += flags(enc_layers=args.student_layers, dec_layers=args.student_layers)
    # a random-weight teacher's targets are not art, so no pretrained network is needed to
    # measure them (metrics.json says which weights were random)
    vgg = args.vgg_weights or ("random" if args.model in PRESETS else None)
    evaluate = (
        flags(data=args.out, student=f"{args.out}/train/{args.name}", name="golden")
        + (["--vgg-weights", vgg] if vgg else [])
        + (["--lpips-weights", "random"] if args.model in PRESETS else [])
    )
    parse(generate_job.Args, generate, "jobs.generate", None)
    config_from_args(train)
    return [("generate", generate), ("train", train), ("evaluate", evaluate)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.pipeline", __doc__)
    plan = steps(args)
    if chosen_teacher(args) == "student":
        print(
            f"no SD 1.5 weights (--model {args.model}): the teacher is a stand-in, the MicroAST "
            "authors' released weights (--teacher student); the student is a MicroAST trained "
            "from scratch. --teacher styleid runs StyleID on the random-weight model instead."
        )
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


cli = partial(run_cli, main)  # the console script `styleid-pipeline` (pyproject.toml)

if __name__ == "__main__":
    cli()
