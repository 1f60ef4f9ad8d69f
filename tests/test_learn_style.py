"""Learning an LSAST style: the loss step on the tiny teacher (gradient gating, only the
generator changes, the loss falls, resuming is exact) and `jobs.learn_style` on a real local
Ray cluster (DDP over two workers, safetensors checkpoints, resume by re-running)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from common.errors import UserError
from common.storage import Storage
from jobs.learn_style import learn, main, parse_args
from teacher_workers.lsast import learning
from teacher_workers.lsast.generator import generator_from_bytes, new_generator
from teacher_workers.lsast.learn_config import LearnConfig
from teacher_workers.lsast.learning import (
    LATEST,
    PROMPTS,
    restore,
    save_checkpoint,
)
from teacher_workers.lsast.styles import learned_from
from teacher_workers.lsast.training import Draw, StyleLoss, draw, style_image
from teacher_workers.models import TeacherModel, load_teacher
from tests.support.faults import LoseWorkerAtStep


@pytest.fixture(scope="module")
def teacher() -> TeacherModel:
    return load_teacher("tiny", text_encoder=True)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(3, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(low, size=64, mode="bilinear", align_corners=False)


def last_linear_grad_rows(generator, dim: int = 32) -> torch.Tensor:
    """|grad| summed per prompt over the generator's last Linear (its rows are 30 x D)."""
    grad = generator.attention.ff.net[2].weight.grad
    return grad.abs().view(30, dim, -1).sum((1, 2))


@pytest.mark.parametrize("through", [False, True])
def test_only_the_decoder_prompt_trains_in_code_mode(teacher, images, through):
    generator = new_generator(teacher).train()
    loss = StyleLoss(teacher, "code", grad_through_down_mid=through)(
        generator, images, Draw(1, True, 450, 7)
    )
    loss.backward()
    rows = last_linear_grad_rows(generator)
    assert rows[6] > 0  # decoder prompt at t=450 (stage 4): P_6
    assert (rows[4] > 0) == through and (rows[5] > 0) == through
    assert rows[7:].sum() == 0 and rows[:4].sum() == 0
    frozen = [teacher.unet, teacher.vae, teacher.text_encoder]
    assert all(p.grad is None for m in frozen for p in m.parameters())


def test_a_few_steps_lower_the_loss_and_change_only_the_generator(teacher, images):
    generator = new_generator(teacher).train()
    loss_fn = StyleLoss(teacher, "code")
    frozen = {n: p.clone() for n, p in teacher.unet.named_parameters()}
    frozen_clip = {n: p.clone() for n, p in teacher.text_encoder.named_parameters()}
    before = {n: p.clone() for n, p in generator.named_parameters()}
    draws = [draw(len(images), seed) for seed in range(2)]

    def mean_loss() -> float:
        with torch.no_grad():
            return sum(loss_fn(generator, images, d).item() for d in draws) / len(draws)

    start = mean_loss()
    optimizer = torch.optim.AdamW(generator.parameters(), 1e-2, weight_decay=0.01)
    for step in range(6):
        optimizer.zero_grad()
        loss_fn(generator, images, draws[step % len(draws)]).backward()
        optimizer.step()
    assert mean_loss() < 0.99 * start  # a random tiny UNet heeds its context little
    assert all(torch.equal(p, frozen[n]) for n, p in teacher.unet.named_parameters())
    assert all(torch.equal(p, frozen_clip[n]) for n, p in teacher.text_encoder.named_parameters())
    changed = [n for n, p in generator.named_parameters() if not torch.equal(p, before[n])]
    assert "attention.ff.net.2.weight" in changed
    assert torch.equal(
        generator.initial_embeddings[0], teacher.text_encoder.get_input_embeddings().weight[320]
    )


def test_a_resumed_run_takes_the_steps_an_uninterrupted_one_would(teacher, images, tmp_path):
    config = LearnConfig(styles=(), out=str(tmp_path))
    storage = config.storage()
    loss_fn = StyleLoss(teacher, "code")

    def fresh():
        generator = new_generator(teacher).train()
        return generator, torch.optim.AdamW(generator.parameters(), 1e-3, weight_decay=0.01)

    def train(generator, optimizer, steps):
        for step in steps:
            optimizer.zero_grad()
            loss_fn(generator, images, draw(len(images), 100 + step)).backward()
            optimizer.step()

    straight, optimizer = fresh()
    train(straight, optimizer, range(4))
    first, optimizer = fresh()
    train(first, optimizer, range(2))
    save_checkpoint(storage, config, 2, first, optimizer, [{"step": 2, "loss": 1.0}], None)
    resumed, optimizer = fresh()
    restore(storage, 2, resumed, optimizer)
    train(resumed, optimizer, range(2, 4))
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-7), name
    assert json.loads(storage.read_bytes(LATEST))["step"] == 2


def test_style_images_are_resized_bicubic_without_crop(tmp_path):
    image = Image.new("RGB", (120, 40), (200, 10, 10))
    path = tmp_path / "wide.png"
    image.save(path)
    pixels = style_image(path.read_bytes(), str(path), 64)
    assert pixels.shape == (3, 64, 64)
    assert torch.allclose(pixels[:, 0, 0], torch.tensor([200, 10, 10]) / 255, atol=1e-6)


def write_styles(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    for k in range(n):
        Image.new("RGB", (80, 64), (40 * k, 200 - 50 * k, 90)).save(folder / f"art{k}.png")
    return folder


def test_learn_style_on_ray_resumes_a_run_and_keeps_its_last_checkpoint(
    ray_cluster: Any, teacher, tmp_path, capsys, monkeypatch
) -> None:
    """One Ray Train run (the costly part) resumes a run stopped at step 1, loses a worker at
    step 2, resumes from that checkpoint and takes step 3, with DDP over two workers; the
    re-runs after it need no Ray."""
    styles, out = write_styles(tmp_path / "art"), tmp_path / "learned"
    args = ["--styles", str(styles), "--out", str(out), "--resolution", "64", "--workers", "2"]
    args += ["--checkpoint-every", "1", "--lr", "1e-3"]
    config = LearnConfig(styles=(), out=str(out), lr=1e-3, resolution=64)
    stopped = new_generator(teacher).train()
    optimizer = torch.optim.AdamW(stopped.parameters(), 1e-3, weight_decay=0.01)
    StyleLoss(teacher, "code")(stopped, torch.rand(1, 3, 64, 64), Draw(0, False, 300, 1)).backward()
    optimizer.step()
    record = {"step": 1, "loss": 1.5, "seconds": 1.0}
    storage = Storage(str(out))
    save_checkpoint(storage, config, 1, stopped, optimizer, [record], None)

    marker = tmp_path / "crashed"
    # the driver's trainer (`jobs.learn_style.fit`) runs the real per-worker function, whose
    # last rank is lost once
    lose = LoseWorkerAtStep(2, str(marker))
    monkeypatch.setattr(learning, "learn_loop_per_worker", lose)
    assert learn(parse_args([*args, "--steps", "3"])) == 0
    assert marker.exists()  # a worker was lost after step 2's checkpoint
    latest = json.loads(storage.read_bytes(LATEST))
    assert [r["step"] for r in latest["history"]] == [1, 2, 3] and latest["history"][0] == record
    assert storage.list("checkpoints/step-00000002") == []  # only the last is kept
    learned = generator_from_bytes(storage.read_bytes(PROMPTS), "prompts")
    assert learned().shape == (30, 32)
    assert not torch.equal(
        learned.state_dict()["attention.ff.net.2.weight"],
        stopped.state_dict()["attention.ff.net.2.weight"],
    )
    assert (out / "loss.png").stat().st_size > 0
    # what the student of these targets takes as the style's images
    recorded = learned_from(storage.url(PROMPTS), {})
    assert recorded == [str(p) for p in sorted(styles.iterdir())]

    assert main([*args, "--steps", "3"]) == 0
    assert "already learned to step 3" in capsys.readouterr().out
    with pytest.raises(UserError, match="other settings"):
        main([*args, "--steps", "4", "--stage-indexing", "paper"])
    (out / LATEST).write_text("{broken")
    with pytest.raises(UserError, match="is damaged"):
        main([*args, "--steps", "4"])
