"""LSAST behind the Teacher interface: a learned style (a prompt file) per pair, a canny
ControlNet pinned beside the model, and no stored features (so any tile fits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from common.ids import config_hash
from common.planning import MAX_TILE
from teacher_workers.lsast.config import (
    DEFAULT_CONTROLNET,
    LSAST_ENGINE_VERSION,
    TINY_CONTROLNET,
    check_controlnet_name,
)
from teacher_workers.model_choice import PRESETS
from teacher_workers.model_source import pin_controlnet

if TYPE_CHECKING:  # the engine's modules load torch and diffusers: imported where they run
    import torch

    from teacher_workers.lsast.engine import LSASTEngine
    from teacher_workers.lsast.generator import LSASTPromptGenerator
    from teacher_workers.options import TeacherOptions


class LSASTTeacher:
    """The `Teacher` of `TeacherOptions.lsast`."""

    name = "lsast"
    title = "LSAST"
    style_input = "learned"

    def check(self, options: TeacherOptions) -> None:
        if options.lsast.controlnet is not None:
            check_controlnet_name(options.lsast.controlnet)

    def chosen(self, options: TeacherOptions) -> TeacherOptions:
        """The shared --steps, --resolution, --seed and --batch-size (with LSAST's own
        defaults) into its config; no --controlnet is the canny ControlNet for a real model, a
        tiny one for a preset."""
        lsast = options.lsast
        default_net = TINY_CONTROLNET if options.model in PRESETS else DEFAULT_CONTROLNET
        lsast = replace(
            lsast,
            steps=options.styleid.steps,
            resolution=options.styleid.resolution,
            seed=lsast.seed if options.seed is None else options.seed,
            batch_size=options.batch_size or lsast.batch_size,
            controlnet=lsast.controlnet or default_net,
        )
        return replace(options, lsast=lsast)

    def resolution(self, options: TeacherOptions) -> int:
        return options.lsast.resolution

    def pinned(self, options: TeacherOptions) -> TeacherOptions:
        """The ControlNet pinned as the model is (a `tiny` one is made from the model, so the
        model pins it)."""
        if options.lsast.controlnet == TINY_CONTROLNET:
            return options
        controlnet = pin_controlnet(options.lsast.controlnet, options.lsast.controlnet_revision)
        lsast = replace(
            options.lsast,
            controlnet=controlnet.name,
            controlnet_revision=controlnet.revision,
            controlnet_digest=controlnet.digest,
        )
        return replace(options, lsast=lsast)

    def hash(self, options: TeacherOptions, model: str, revision: str | None, dtype: str) -> str:
        fields = {"model": model, "revision": revision, "dtype": dtype}
        fields |= options.lsast.output_fields()
        return config_hash({"teacher": "lsast", "engine": LSAST_ENGINE_VERSION, **fields})

    def build(
        self, options: TeacherOptions, device: torch.device, dtype: torch.dtype
    ) -> LSASTEngine:
        """The model with its text encoder (the prompts are encoded per style) and the
        ControlNet."""
        from teacher_workers.lsast.control import load_controlnet
        from teacher_workers.lsast.engine import LSASTEngine
        from teacher_workers.models import load_teacher, tune

        teacher = load_teacher(
            options.model,
            dtype,
            device,
            options.revision,
            config=options.model_config,
            text_encoder=True,
        )
        lsast = options.lsast
        controlnet = load_controlnet(
            lsast.controlnet, teacher.unet, dtype, device, lsast.controlnet_revision
        )
        tune(teacher.unet, options.compile, options.channels_last)
        tune(controlnet, options.compile, options.channels_last)
        return LSASTEngine(teacher, controlnet, lsast)

    def style_urls(
        self,
        options: TeacherOptions,
        arguments: Sequence[str],
        storage: Mapping[str, Any],
        role: str,
    ) -> list[str]:
        """The prompt files, each as wide as the model's text encoder (a file learned for
        another model is one line here, not a tensor-size error in an actor)."""
        from teacher_workers.lsast.styles import prompt_file_urls

        return prompt_file_urls(arguments, storage, options.text_width())

    def style_url(self, options: TeacherOptions, argument: str, storage: Mapping[str, Any]) -> str:
        """The prompt file of a file or learned-style folder."""
        return self.style_urls(options, [argument], storage, "style")[0]

    def read_style(self, data: bytes, url: str, resolution: int) -> LSASTPromptGenerator:
        """The prompt generator the file holds, in eval mode."""
        from teacher_workers.lsast.generator import generator_from_bytes

        return generator_from_bytes(data, url).eval()

    def tile(self, options: TeacherOptions, gpu_memory_gb: float) -> tuple[int, int]:
        """LSAST stores no features between steps: the largest tile."""
        return MAX_TILE

    def describe(self, options: TeacherOptions) -> dict[str, Any]:
        """Its name; the model flags tell the rest."""
        return {"teacher_label": f"{self.title} (teacher)"}
