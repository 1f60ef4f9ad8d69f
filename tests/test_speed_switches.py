"""The GPU speed switches (--compile, --channels-last) give the same outputs on the CPU.

Inductor's code generation takes minutes on this CPU (it is timed on a GPU in
benchmarks/teacher_switches.py), so the compiled runs here use Dynamo's `eager` backend: what
is checked is what our code decides, that the whole model traces with the engines' stateful
attention processors kept out of the graph, gives the same targets, and is not recompiled at
every timestep.
"""

from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from student.inference import for_inference, stylize
from student.model import STTRConfig, build_sttr
from teacher_workers.models import load_teacher, tune
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.engine import StyleIDEngine

CONFIG = StyleIDConfig(steps=3, resolution=64)


def tile_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return images[:2], images[2:]


def test_teacher_options_turn_the_switches_on() -> None:
    engine = TeacherOptions(compile=True, channels_last=True).build()
    unet = engine.teacher.unet
    assert unet._compiled_call_impl is not None
    conv = unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    plain = TeacherOptions().build().teacher.unet
    assert plain._compiled_call_impl is None and plain.conv_in.weight.is_contiguous()


def test_channels_last_teacher_makes_the_same_targets() -> None:
    contents, styles = tile_inputs()
    reference = StyleIDEngine(load_teacher("tiny"), CONFIG).stylize_tile(contents, styles)
    teacher = load_teacher("tiny")
    tune(teacher.unet, compile=False, channels_last=True)
    out = StyleIDEngine(teacher, CONFIG).stylize_tile(contents, styles)
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=0)


def test_compiled_teacher_makes_the_same_targets_without_recompiling_per_step() -> None:
    contents, styles = (images[:1] for images in tile_inputs())  # 1x1: one batch shape
    teacher = load_teacher("tiny")
    teacher.unet.compile(backend="eager", dynamic=False)  # as `tune` does, without codegen
    torch._dynamo.reset()
    counters.clear()
    graphs = []
    with torch._dynamo.config.patch(recompile_limit=1000):  # no limit to hide recompiles
        for steps in (2, 4):  # 4 steps: timesteps the 2-step graphs never saw
            config = StyleIDConfig(steps=steps, resolution=64)
            reference = StyleIDEngine(load_teacher("tiny"), config).stylize_tile(contents, styles)
            out = StyleIDEngine(teacher, config).stylize_tile(contents, styles)
            torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
            graphs.append(counters["stats"]["unique_graphs"])
    # graphs depend on batch shapes and graph breaks, never on the timesteps
    assert graphs[0] > 0 and graphs[1] == graphs[0], graphs


def test_compiled_student_stylizes_as_the_eager_one() -> None:
    torch.manual_seed(0)
    model = for_inference(build_sttr(STTRConfig(), init="scratch"))
    content, style = torch.rand(3, 64, 96), torch.rand(3, 64, 64)
    reference = stylize(model, content, style, "fp32")
    model.compile(backend="eager", dynamic=False)
    counters.clear()
    torch.testing.assert_close(stylize(model, content, style, "fp32"), reference)
    assert counters["stats"]["unique_graphs"] > 0  # the compiled forward ran, not the eager one
    assert list(model.state_dict()) == list(build_sttr(STTRConfig(), "scratch").state_dict())
