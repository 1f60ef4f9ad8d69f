"""`jobs.evaluate` streams the golden set: its peak memory stays flat as the set grows, where
holding every golden triple (the issue's 7.5 GB at 800 pairs of 512 px) grows with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import alexnet

from benchmarks.synthetic_run import write_synthetic_run
from evaluation.golden_set import CHUNK
from student.checkpoint import save_student
from student.model import STTRConfig, build_sttr
from tests.support.cli import ROOT
from tests.support.train_helpers import write_seeded_vgg19

SIZE = 128  # px, golden images
# golden pairs (the synthetic run's last content with every style); both a whole number of
# the chunks evaluation reads at once, so each holds one chunk at its peak
SMALL, LARGE = CHUNK, 6 * CHUNK
BYTES_PER_PAIR = 4 * 3 * SIZE * SIZE * 4  # content, style, target, student image in float32

# The job in a fresh process; the peak resident memory (Linux's VmHWM) is reset as the golden
# set's evaluation starts, so the figure is that of the streaming, not of loading the networks
# (which peaks higher). The contact sheet is cut to 2 rows: SHEET_ROWS (16) caps its
# thumbnails and figure, which at these sizes would still grow with the set. It also counts
# the golden triples read and not yet freed, and prints the most there were at once.
SHEET_ROWS = 2
EVALUATE = f"""
import sys, weakref
from evaluation import golden_set, reporting
from jobs import evaluate

evaluate_golden, read_chunk = reporting.evaluate_golden, golden_set.read_chunk
alive, most = [0], [0]


def freed():
    alive[0] -= 1


def counted(*args, **kwargs):
    triples = read_chunk(*args, **kwargs)
    for triple in triples:
        alive[0] += 1
        weakref.finalize(triple.content, freed)
    most[0] = max(most[0], alive[0])
    return triples


def measured(*args, **kwargs):
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := the resident memory now
    return evaluate_golden(*args, **kwargs)


reporting.evaluate_golden, golden_set.read_chunk = measured, counted
golden_set.SHEET_ROWS = {SHEET_ROWS}
assert evaluate.main(sys.argv[1:]) == 0
status = open("/proc/self/status").read().splitlines()
print(most[0])
print(next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:")))
"""


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A small student and seeded measuring networks, shared by both runs."""
    root = tmp_path_factory.mktemp("networks")
    config = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=64)
    save_student(build_sttr(config, init="scratch"), config, str(root / "student"))
    torch.manual_seed(0)
    features = {f"features.{k}": v for k, v in alexnet().features.state_dict().items()}
    torch.save(features, root / "alexnet.pth")
    return {
        "student": str(root / "student"),
        "vgg": write_seeded_vgg19(root / "vgg19.pth"),
        "lpips": str(root / "alexnet.pth"),
    }


def peak_rss(networks: dict[str, str], root: Path, golden_pairs: int) -> tuple[int, int, str]:
    """The peak resident memory (bytes) of `jobs.evaluate --device cpu` evaluating a run of
    `golden_pairs`, the most golden triples it held at once (see EVALUATE), and what the job
    printed."""
    write_synthetic_run(root, n_content=2, n_style=golden_pairs, size=SIZE)
    flags = ["--data", str(root), "--student", networks["student"], "--device", "cpu"]
    flags += ["--vgg-weights", networks["vgg"], "--lpips-weights", networks["lpips"]]
    done = subprocess.run(
        [sys.executable, "-c", EVALUATE, *flags], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *printed, most, peak = done.stdout.splitlines()
    return int(peak), int(most), "\n".join(printed)


def test_peak_memory_does_not_grow_with_the_golden_set(networks, tmp_path) -> None:
    small, _, _ = peak_rss(networks, tmp_path / "small", SMALL)
    large, most, printed = peak_rss(networks, tmp_path / "large", LARGE)
    print(f"peak RSS: {SMALL} pairs {small / 2**20:.1f} MiB, {LARGE} pairs {large / 2**20:.1f} MiB")
    assert f"{LARGE} golden pairs" in printed
    # two chunks (the next is read while the last is still named) and the sheet's rows, not
    # the set (6 chunks)
    assert most <= 2 * CHUNK + SHEET_ROWS, most
    # Holding the extra pairs would add at least `held`. The larger run's peak has come out
    # 8 to 17 MiB above the smaller's, steps that do not grow with the pairs (20 to 40 alike).
    held = (LARGE - SMALL) * BYTES_PER_PAIR  # 30 MiB
    assert large - small < held, (small, large, held)
