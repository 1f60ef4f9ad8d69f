"""Learning an LSAST style (the authors' training of the prompt generator), as a library the
driver `jobs.learn_style` runs on Ray Train: the run's checkpoints in the output storage
(generator and AdamW state, safetensors, no pickles; the record naming them written last) and
the per-worker loop. The run's config is `learn_config`'s (no torch there, for `--help`).

The UNet, VAE and text encoder stay frozen; only the generator trains (DDP over the workers,
each taking its own image per step, so a step sees `workers` images).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from common.errors import UserError, first_line
from common.pictures import loss_curve
from common.storage import Storage, read_url
from teacher_workers.lsast.generator import LSASTPromptGenerator, generator_bytes, new_generator
from teacher_workers.lsast.learn_config import LearnConfig
from teacher_workers.lsast.styles import PROMPT_FILE
from teacher_workers.lsast.training import (
    StyleLoss,
    draw,
    load_optimizer_tensors,
    optimizer_tensors,
    step_seed,
    style_image,
)
from teacher_workers.models import load_teacher

log = logging.getLogger(__name__)

PROMPTS = PROMPT_FILE
LATEST = "checkpoints/latest.json"
LOSS = "loss.jsonl"
CURVE = "loss.png"


# ---- checkpoints in the output storage ------------------------------------------------------
def read_latest(storage: Storage) -> dict[str, Any] | None:
    """The last checkpoint's record (step, settings, loss history), or None for a new run."""
    try:
        data = storage.read_bytes(LATEST)
    except FileNotFoundError:
        return None
    try:
        latest = json.loads(data)
        return {
            "step": int(latest["step"]),
            "settings": latest["settings"],
            "history": latest["history"],
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{storage.url(LATEST)} is damaged ({first_line(exc)})") from None


def check_same_settings(config: LearnConfig, latest: dict[str, Any]) -> None:
    """A run resumes only with the settings it was started with."""
    saved, now = latest["settings"], config.settings()
    changed = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v]
    if changed:
        raise UserError(
            f"{config.out} holds a style learned with other settings ({'; '.join(changed)}): "
            "use the same flags to resume, or another --out"
        )


def step_key(step: int, name: str) -> str:
    return f"checkpoints/step-{step:08d}/{name}"


def save_checkpoint(
    storage: Storage,
    config: LearnConfig,
    step: int,
    generator: LSASTPromptGenerator,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, Any]],
    previous: int | None,
) -> None:
    """Weights and optimiser state first, the record that names them last (a crash in between
    leaves the previous checkpoint in force); then the older step's files go."""
    from safetensors.torch import save

    weights = generator_bytes(generator, config.styles)
    storage.write_bytes(step_key(step, "generator.safetensors"), weights)
    storage.write_bytes(step_key(step, "optimizer.safetensors"), save(optimizer_tensors(optimizer)))
    storage.write_bytes(PROMPTS, weights)
    storage.write_bytes(LOSS, "".join(json.dumps(r) + "\n" for r in history).encode())
    steps, losses = [r["step"] for r in history], [r["loss"] for r in history]
    storage.write_bytes(CURVE, loss_curve(steps, losses, "LSAST style loss"))
    record = {"step": step, "settings": config.settings(), "history": history}
    storage.write_bytes(LATEST, json.dumps(record, indent=1).encode())
    if previous is not None and previous != step:
        for name in ("generator.safetensors", "optimizer.safetensors"):
            storage.delete(step_key(previous, name))


def restore(
    storage: Storage,
    step: int,
    generator: LSASTPromptGenerator,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Load the generator and AdamW state of checkpoint `step` (a damaged one: `UserError`)."""
    from safetensors.torch import load

    try:
        generator.load_state_dict(load(storage.read_bytes(step_key(step, "generator.safetensors"))))
        tensors = load(storage.read_bytes(step_key(step, "optimizer.safetensors")))
        load_optimizer_tensors(
            optimizer, {k: v.to(generator.initial_embeddings.device) for k, v in tensors.items()}
        )
    except Exception as exc:  # missing, truncated or foreign files all mean "cannot resume"
        raise UserError(
            f"cannot resume from checkpoint step {step} in {storage.url('checkpoints')}: "
            f"{first_line(exc)}"
        ) from None


# ---- the workers ----------------------------------------------------------------------------
def mean_over_ranks(values: list[float], device: torch.device) -> float:
    """The mean of every rank's losses since the last checkpoint."""
    total = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(total)
    return float(total[0] / total[1])


def learn_loop_per_worker(loop_config: dict[str, Any]) -> str | None:
    """Ray Train entry point: restore (or start) the generator, then train to `steps`.

    A `UserError` (a damaged checkpoint, an unreadable style image) is returned, not raised,
    so Ray Train does not restart the group for what a retry cannot fix."""
    config: LearnConfig = loop_config["config"]
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    storage = config.storage()
    try:
        teacher = load_teacher(
            config.model, torch.float32, device, config.revision, text_encoder=True
        )
        images = torch.stack([load_style(url, config) for url in config.styles])
        generator = new_generator(teacher, seed=config.seed).train()
        optimizer = torch.optim.AdamW(
            generator.parameters(), config.lr, weight_decay=config.weight_decay
        )
        latest = read_latest(storage)
        step, history = 0, []
        if latest is not None:
            step, history = latest["step"], latest["history"]
            restore(storage, step, generator, optimizer)
    except UserError as exc:
        return str(exc)
    if rank == 0:
        log.info("learning a style from %d images, steps %d..%d", len(images), step, config.steps)
    model = ray.train.torch.prepare_model(generator)
    loss_fn = StyleLoss(teacher, config.stage_indexing, config.grad_through_down_mid)
    saved, window, start = step if latest is not None else None, [], time.perf_counter()
    while step < config.steps:
        loss = loss_fn(model, images, draw(len(images), step_seed(config.seed, step, rank)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        window.append(loss.item())
        if step % config.checkpoint_every and step != config.steps:
            continue
        record = {
            "step": step,
            "loss": mean_over_ranks(window, device),
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if rank == 0:
            save_checkpoint(storage, config, step, generator, optimizer, history, saved)
            log.info("step %d/%d  loss %.5f", step, config.steps, record["loss"])
        ray.train.report(record)
        saved, window = step, []
    return None


def load_style(url: str, config: LearnConfig) -> torch.Tensor:
    """One style image as the generator trains on it."""
    return style_image(read_url(url, config.storage_options), url, config.resolution)
