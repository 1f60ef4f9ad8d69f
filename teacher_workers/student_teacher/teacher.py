"""A trained student behind the Teacher interface: a style image per pair, like StyleID, but
one feed-forward pass per pair and no stored features (so any tile fits)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from common.ids import config_hash
from common.planning import MAX_TILE
from common.storage import Storage
from teacher_workers.student_teacher.config import (
    STUDENT_ENGINE_VERSION,
    check_digest,
    pin_student,
    weights_digest,
)
from teacher_workers.teacher import ImageStyles

if TYPE_CHECKING:  # the network's modules load where it runs: `--help` needs no torch
    import torch

    from teacher_workers.options import TeacherOptions
    from teacher_workers.student_teacher.engine import StudentEngine

ARCH_TITLES = {"sttr": "STTR", "microast": "MicroAST"}


class StudentTeacher(ImageStyles):
    """The `Teacher` of `TeacherOptions.student_teacher`."""

    name = "student"
    title = "Student"

    def check(self, options: TeacherOptions) -> None:
        """Its config checked itself when made; the weights are read when pinned."""

    def chosen(self, options: TeacherOptions) -> TeacherOptions:
        """The shared --resolution and --batch-size into its config (it has no steps or seed)."""
        config = replace(
            options.student_teacher,
            resolution=options.styleid.resolution,
            batch_size=options.batch_size or options.student_teacher.batch_size,
        )
        return replace(options, student_teacher=config)

    def resolution(self, options: TeacherOptions) -> int:
        return options.student_teacher.resolution

    def pinned(self, options: TeacherOptions) -> TeacherOptions:
        """The checkpoint resolved (a run folder to its best one) and its bytes' digest kept."""
        url, digest = pin_student(options.student_teacher)
        config = replace(options.student_teacher, student=url, digest=digest)
        return replace(options, student_teacher=config)

    def hash(self, options: TeacherOptions, model: str, revision: str | None, dtype: str) -> str:
        """The weights by their bytes (not where they lie), the resolution and the dtype; the
        diffusion model is not read."""
        config = options.student_teacher
        return config_hash(
            {
                "teacher": self.name,
                "engine": STUDENT_ENGINE_VERSION,
                "weights": f"sha256:{config.digest or weights_digest(config)}",
                "resolution": config.resolution,
                "dtype": dtype,
            }
        )

    def build(
        self, options: TeacherOptions, device: torch.device, dtype: torch.dtype
    ) -> StudentEngine:
        import torch

        from student.checkpoint import load_student
        from student.microast import MicroASTConfig, build_microast
        from student.microast_weights import AUTHORS
        from teacher_workers.student_teacher.engine import StudentEngine

        config = options.student_teacher
        check_digest(config)
        if config.named:
            model: torch.nn.Module = build_microast(MicroASTConfig(), AUTHORS)
        else:
            model = load_student(config.student)[0]
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if options.compile:
            model.compile()
        return StudentEngine(model.to(device, dtype), config.batch_size)

    def describe(self, options: TeacherOptions) -> dict[str, Any]:
        """Its name in reports and its size. The shipped authors' weights stand in for the
        diffusion teacher the project distils; a checkpoint is named by its architecture and
        folder."""
        from student.architectures import arch_of, build_student
        from student.checkpoint import read_config
        from student.microast import MicroASTConfig

        config = options.student_teacher
        student = MicroASTConfig() if config.named else read_config(Storage(config.student))
        if config.named:
            label = "MicroAST authors' weights (stand-in teacher)"
        else:
            folder = config.student.rstrip("/").rsplit("/", 1)[-1]
            label = f"{ARCH_TITLES[arch_of(student)]} {folder} (teacher)"
        model = build_student(student, init="scratch")  # only counted
        return {
            "teacher_label": label,
            "teacher_model": config.student,
            "teacher_parameters": sum(p.numel() for p in model.parameters()),
        }

    def tile(self, options: TeacherOptions, gpu_memory_gb: float) -> tuple[int, int]:
        """No features are stored between pairs: the largest tile."""
        return MAX_TILE
