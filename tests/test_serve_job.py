"""`python -m jobs.serve` as a user runs it: refusals before Ray starts, and a real process that
serves, answers, and stops on Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest
import requests
import torch
from PIL import Image

from student.checkpoint import save_student
from student.model import STTRConfig, build_sttr
from tests.support.cli import ROOT, printed_lines, run_in_process
from tests.support.network import free_port
from tests.test_serving_http import photo


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("student") / "epoch-0001"
    torch.manual_seed(0)
    config = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=64, dropout=0.0)
    save_student(build_sttr(config, init="scratch"), config, str(folder))
    return str(folder)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--student", "/no/such/run"],
            "/no/such/run: no such checkpoint (nothing is stored there)",
        ),
        (["--replicas", "3:1"], "--replicas 3:1: MIN is above MAX"),
        (["--batch-size", "0"], "--batch-size must be a number >= 1, got 0"),
        (["--device", "cuda"], "--device cuda needs --gpus-per-replica > 0"),
        (["--gallery", "/no/such/folder"], "gallery input '/no/such/folder' does not exist"),
    ],
)
def test_a_bad_option_is_one_line_before_ray_starts(student, argv, message):
    result = run_in_process("serve", "--student", student, *argv)
    assert result.returncode == 2
    assert printed_lines(result.stderr) == [f"error: {message}"], result.stderr
    assert "Ray's logs" not in result.stdout


def test_the_command_serves_the_shipped_student_until_ctrl_c():
    """What `make serve` runs: no flags but the port, the MicroAST authors' weights."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray
    command = [sys.executable, "-m", "jobs.serve", "--port", str(port), "--max-side", "64"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("serving ") for line in lines):
            line = process.stdout.readline()
            assert line, f"jobs.serve ended before serving: {lines}"
            lines.append(line)
        assert lines[-1].startswith("serving microast-authors at http://127.0.0.1:")
        files = {"content": ("c.png", photo(48, 64)), "style": ("s.png", photo(32, 32, 3))}
        response = requests.post(f"http://127.0.0.1:{port}/stylize", files=files, timeout=120)
        assert response.status_code == 200, response.text
        assert Image.open(io.BytesIO(response.content)).size == (64, 48)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    printed = [x for x in lines + rest.splitlines() if x.strip()]
    assert len(printed) <= 4, printed  # Ray's logs line, serving ..., Ctrl-C stops it
