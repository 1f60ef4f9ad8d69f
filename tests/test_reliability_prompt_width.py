"""A learned style made for another model's width is one line before any work: the prompts of a
96-wide text encoder cannot enter the tiny model's 32-wide one, and no re-run could change that."""

from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from PIL import Image

from teacher_workers.lsast.generator import LSASTPromptGenerator, generator_bytes
from teacher_workers.model_choice import text_width
from teacher_workers.models import load_teacher
from tests.support.cli import run_in_process

WIDE = 96


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A content image and a prompt file learned for a 96-wide text encoder."""
    content = tmp_path / "content"
    content.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(content / "c.png")
    prompts = tmp_path / "wide.safetensors"
    prompts.write_bytes(generator_bytes(LSASTPromptGenerator(torch.randn(WIDE))))
    return {"content": content, "prompts": prompts}


def test_the_width_read_from_the_config_is_the_loaded_encoders():
    teacher = load_teacher("tiny", text_encoder=True)
    assert text_width("tiny") == teacher.text_encoder.get_input_embeddings().weight.shape[1]
    assert text_width("tiny") != WIDE


def expected_line(prompts: Path) -> str:
    return (
        f"error: {prompts} holds {WIDE}-wide prompts, learned for another model: this model's "
        f"text encoder is {text_width('tiny')} wide (learn the style with this --model)"
    )


def test_stylize_refuses_prompts_of_another_width(inputs, tmp_path):
    out = tmp_path / "out.png"
    args = ["--content", str(inputs["content"] / "c.png"), "--out", str(out)]
    args += ["--teacher", "lsast", "--style-prompts", str(inputs["prompts"]), "--resolution", "64"]
    result = run_in_process("stylize", *args, "--steps", "3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected_line(inputs["prompts"])]
    assert not out.exists()


def test_generate_refuses_prompts_of_another_width_before_ray_starts(inputs, tmp_path):
    out = tmp_path / "run"
    args = ["--content", str(inputs["content"]), "--out", str(out), "--teacher", "lsast"]
    args += ["--style-prompts", str(inputs["prompts"]), "--resolution", "64", "--steps", "3"]
    was_up = ray.is_initialized()  # another test file's cluster, in a full run
    result = run_in_process("generate", *args)
    started = ray.is_initialized() and not was_up
    if started:
        ray.shutdown()
    assert not started
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected_line(inputs["prompts"])]
    assert not out.exists()  # no run.json: refused before the run began
