"""ONNX export of the student for small devices, and a check of the export against PyTorch."""

from __future__ import annotations

import importlib
import io
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from common.errors import UserError
from student.architectures import arch_of
from student.inference import eval_mode

OPSET = 17
INPUTS = ("content", "style")
OUTPUT = "stylized"
DYNAMIC_AXES = {
    "content": {0: "batch", 2: "height", 3: "width"},
    "style": {0: "batch", 2: "style_height", 3: "style_width"},
    "stylized": {0: "batch", 2: "height", 3: "width"},
}


def require_onnx() -> None:
    """Fail with one line when the `onnx` extra is missing. Its packages are imported only on
    the export path, so every other command (and `jobs.export --help`) works without them."""
    for module in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(
                f"ONNX export needs {module}: pip install -c constraints.txt '.[onnx]'"
            ) from None


def export_onnx(model: nn.Module, example_size: int = 256) -> bytes:
    """`model` (eval mode) as an ONNX graph: inputs "content" and "style",
    output "stylized", all [B, 3, H, W] in the student's pixel space (ImageNet-normalized for
    STTR, [0, 1] for MicroAST), with batch and sides dynamic (sides must still be multiples of
    the student's `size_multiple`). The graph's metadata names the architecture, the pixel
    space and the multiple, so a device runtime can prepare its inputs without this project.
    Uses the TorchScript exporter (`dynamo=False`), which keeps the dynamic sizes through the
    attention and the positional encoding."""
    param = next(model.parameters())
    example = torch.zeros(1, 3, example_size, example_size, device=param.device, dtype=param.dtype)
    buffer = io.BytesIO()
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on Python branches in torch's own attention and on slices it does
        # not fold: expected with dynamic sides, which `check_onnx` tests at other sizes
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        torch.onnx.export(
            model,
            (example, example),
            buffer,
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes=DYNAMIC_AXES,
            opset_version=OPSET,
            dynamo=False,
        )
    return with_metadata(buffer.getvalue(), model)


def with_metadata(graph: bytes, model: nn.Module) -> bytes:
    """The serialized graph with `arch`, `pixel_space` (and its mean and std) and
    `size_multiple` in its metadata."""
    import onnx  # the onnx extra: see require_onnx

    proto = onnx.load_from_string(graph)
    space = model.space
    values = {
        "arch": arch_of(model.config),
        "pixel_space": space.name,
        "pixel_mean": ",".join(map(str, space.mean)),
        "pixel_std": ",".join(map(str, space.std)),
        "size_multiple": str(model.size_multiple),
    }
    onnx.helper.set_model_props(proto, values)
    return proto.SerializeToString()


def check_onnx(model: nn.Module, graph: bytes, sizes: Sequence[tuple[int, int]]) -> float:
    """Largest absolute difference between onnxruntime (CPU) and PyTorch outputs, over one
    seeded random pair per size (H, W): content H x W with a style of W x H, so content and
    style sizes differ whenever H != W."""
    import onnxruntime  # the onnx extra: see require_onnx

    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    param = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        content = torch.randn(1, 3, h, w, generator=generator)
        style = torch.randn(1, 3, w, h, generator=generator)
        with eval_mode(model), torch.no_grad():
            expected = model(content.to(param.device), style.to(param.device)).float().cpu()
        got = session.run([OUTPUT], {"content": content.numpy(), "style": style.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected.numpy()).max()))
    return worst
