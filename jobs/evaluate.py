r"""Compare teacher and students on the golden set: metrics.json, contact_sheet.png, curves.png.

    python -m jobs.evaluate --data runs/demo --student runs/demo/train/demo/checkpoint_000004
    python -m jobs.evaluate --data runs/demo --student runs/demo/train/demo microast-authors
    ray job submit --address http://HEAD:8265 --working-dir . --runtime-env runtime_env.yaml \
        -- python -m jobs.evaluate --data s3://bucket/run --student s3://bucket/run/train/l1

Writes <data>/eval/<name>/ and ends with the headline figures (each image's LPIPS to its
content; per student its PSNR, SSIM and LPIPS against the teacher, seconds per image,
parameters and GFLOP; means over the golden pairs), which the contact sheet shows under its
column titles too. Several students (of either architecture) run on the same pairs, each with
its own column and metrics.json entry; curves.png shows the training of the first that has a
metrics.jsonl. The students and the measures run where --device says: in a Ray job on a
cluster with GPUs (or with --device cuda), as a Ray task on a GPU worker, so the CPU-only head
only waits for it. Golden pairs are the manifest lines with split "golden", which no training
or validation ever reads. In an LSAST run, the first image each learned style was learned from
stands for it (the students' style input, the style measures and the sheet).

    python -m jobs.evaluate --data runs/demo --student CKPT --also-teacher lsast \
        --style-prompts styles/01 styles/02 --controlnet lllyasviel/control_v11p_sd15_canny

also runs LSAST on the golden pairs of a StyleID run (its model, steps and resolution), and
shows it beside StyleID and the students: each golden style image takes the learned style of its
name (style 01.png: the learn_style folder .../01/ or the prompt file .../01.safetensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Literal

import tyro

from common.cli import StorageJobArgs, choice_flag, parse, run_cli
from common.errors import UserError
from common.run_info import read_run_info
from common.storage import Storage
from evaluation.placement import DEVICES, Device, run_placed
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.model_source import config_source


def weights_flag(network: str, used_for: str) -> object:
    """The help of a pretrained network's weights flag."""
    return tyro.conf.arg(
        help=f"{network} weights (path or URL) for {used_for}, or 'random' (none: the torch hub "
        "cache, else a download unless HF_HUB_OFFLINE is set)"
    )


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.evaluate`."""

    data: str
    """run root with manifests/ and targets/"""
    student: tuple[str, ...]
    """one or more students side by side, each a checkpoint directory, a training run folder
    (its best checkpoint) or microast-authors (the shipped MicroAST weights)"""
    name: str = "golden"
    """output folder <data>/eval/<name>/"""
    teacher_hash: str | None = None
    """which teacher, if several"""
    metrics: str | None = None
    """training metrics.jsonl for curves.png (none: the first student's run that has one)"""
    vgg_weights: Annotated[
        str | None, weights_flag("VGG19", "CFSD and the content and style losses")
    ] = None
    lpips_weights: Annotated[str | None, weights_flag("AlexNet", "LPIPS")] = None
    inception_weights: Annotated[
        str | None, weights_flag("pytorch-fid Inception", "FID, on large golden sets only")
    ] = None
    also_teacher: Annotated[
        Literal["lsast"] | None,
        choice_flag("--also-teacher", ("lsast",)),
        tyro.conf.arg(
            help="also run this teacher on the golden pairs of the run (a StyleID run): a "
            "contact-sheet column beside the run's teacher and the student, and its measures "
            "in metrics.json"
        ),
    ] = None
    style_prompts: Annotated[
        tuple[str, ...],
        tyro.conf.arg(
            help="with --also-teacher lsast: learned styles (learn_style folders or prompt "
            "files); each golden style image takes the one of its file's stem (01.png: "
            ".../01/ or .../01.safetensors)"
        ),
    ] = ()
    lsast: Annotated[LSASTConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=LSASTConfig)
    device: Annotated[
        Device,
        choice_flag("--device", DEVICES),
        tyro.conf.arg(
            help="where the student and the measures run: cuda = a Ray task holding one GPU "
            "(an autoscaling cluster adds a GPU node); auto = that when a Ray job's cluster "
            "has or can add a GPU, else here (this machine's GPU, else its CPU); cpu = here"
        ),
    ] = "auto"

    def __post_init__(self) -> None:
        if not self.student:
            raise UserError("--student needs at least one student")
        if self.style_prompts and not self.also_teacher:
            raise UserError("--style-prompts are learned styles for --also-teacher lsast")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.evaluate", __doc__)
    # here, not at the top: `--help` answers without loading torch
    from evaluation.golden_lsast import GoldenLSAST
    from evaluation.reporting import write_evaluation
    from evaluation.students import resolve_students
    from teacher_workers.sizing import teacher_parameters

    storage = Storage(args.data, args.storage)
    students = resolve_students(args.student, args.storage)  # here: a wrong one fails at once
    info = read_run_info(storage) or {}
    config = info.get("config", {})
    # run.json of this version nests the teacher's options; an older one holds them flat
    teacher = config["teacher"] if isinstance(config.get("teacher"), dict) else config
    # a teacher that is not a diffusion model (a trained student) records its own
    model = info.get("teacher_model") or teacher.get("model", "tiny")
    labels = {info["teacher_hash"]: info["teacher_label"]} if "teacher_label" in info else {}
    lsast = None
    if args.also_teacher:
        lsast = GoldenLSAST.from_run(teacher, args.style_prompts, args.lsast, args.storage)
    written = run_placed(
        write_evaluation,
        args.device,
        storage=storage,
        students=students,
        name=args.name,
        teacher_hash=args.teacher_hash,
        metrics_url=args.metrics,
        weights={
            "vgg": args.vgg_weights,
            "lpips": args.lpips_weights,
            "inception": args.inception_weights,
        },
        options=args.storage,
        lsast=lsast,
        teacher_labels=labels,
        teacher_model=model,
        teacher_parameters=info.get("teacher_parameters")
        or teacher_parameters(
            config_source(model, teacher.get("model_config")), teacher.get("revision")
        ),
    )
    print("\n".join(written.headline))
    print(f"metrics, contact sheet and curves: {written.url}")
    return 0


cli = partial(run_cli, main)  # the console script `styleid-evaluate` (pyproject.toml)

if __name__ == "__main__":
    cli()
