"""Names the hardware a benchmark ran on, for the results JSON."""

import json
import os
import platform
from pathlib import Path

import torch


def describe(device: torch.device) -> dict:
    """Device name, core count and library versions, so figures are never quoted without them."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    return {
        "device": name,
        "device_type": device.type,
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def report(result: dict, out: str | None) -> None:
    """Print a benchmark's result as JSON and, with `out`, write it there."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
