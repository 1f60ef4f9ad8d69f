"""StyleID behind the Teacher interface: a style image per pair, its attention features
stored between inversion and sampling (so its tiles are sized from the GPU's memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from teacher_workers.styleid.config import teacher_hash
from teacher_workers.teacher import ImageStyles

if TYPE_CHECKING:  # the engine's modules load torch and diffusers: imported where they run
    import torch

    from teacher_workers.options import TeacherOptions
    from teacher_workers.styleid.engine import StyleIDEngine


class StyleIDTeacher(ImageStyles):
    """The `Teacher` of `TeacherOptions.styleid`."""

    name = "styleid"
    title = "StyleID"

    def check(self, options: TeacherOptions) -> None:
        """Its config checked itself when made."""

    def chosen(self, options: TeacherOptions) -> TeacherOptions:
        """The shared flags are StyleID's own config fields (folded for every teacher)."""
        return options

    def resolution(self, options: TeacherOptions) -> int:
        return options.styleid.resolution

    def pinned(self, options: TeacherOptions) -> TeacherOptions:
        """The model is all StyleID reads."""
        return options

    def hash(self, options: TeacherOptions, model: str, revision: str | None, dtype: str) -> str:
        return teacher_hash(options.styleid, model, revision, dtype)

    def build(
        self, options: TeacherOptions, device: torch.device, dtype: torch.dtype
    ) -> StyleIDEngine:
        from teacher_workers.models import load_teacher, tune
        from teacher_workers.styleid.engine import StyleIDEngine

        seed = options.styleid.seed
        teacher = load_teacher(
            options.model, dtype, device, options.revision, seed, options.model_config
        )
        tune(teacher.unet, options.compile, options.channels_last)
        return StyleIDEngine(teacher, options.styleid, offload=options.offload)

    def tile(self, options: TeacherOptions, gpu_memory_gb: float) -> tuple[int, int]:
        """As many contents x styles as their stored features fit."""
        from teacher_workers.styleid.sizing import auto_tile

        return auto_tile(options, gpu_memory_gb)

    def describe(self, options: TeacherOptions) -> dict[str, Any]:
        """Its name; the model flags tell the rest."""
        return {"teacher_label": f"{self.title} (teacher)"}
