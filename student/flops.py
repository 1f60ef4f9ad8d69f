"""A student's work per image in GFLOP, as PyTorch's own FLOP counter
(`torch.utils.flop_counter.FlopCounterMode`) sees it: matmuls, convolutions and attention.
One definition for the speed benchmark and the golden-set evaluation, so their figures compare."""

from __future__ import annotations

from collections.abc import Callable

from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def gflop(call: Callable[[], object]) -> float:
    """GFLOP of running `call()` once (a multiply-add counts as two FLOP). Attention runs as the
    math kernel's matmuls, which the counter sees whatever the device, rather than as a fused
    kernel that it may not count."""
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        call()
    return counter.get_total_flops() / 1e9
