"""An independent LSAST sampling loop, written from LSAST.md section 3 (the authors' `test.py`
and `DDIMSampler.decode`), not from the engine: the engine must agree with it at float64 noise
for a non-default ControlNet scale, strength and guidance. It guards what no other test does:
that --control-scale scales the ControlNet's residuals, and that sampling starts from the
noise level one DDIM step above the first denoising step (701 -> 681 for the defaults)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.control import canny_hint, load_controlnet
from teacher_workers.lsast.engine import LSASTEngine
from teacher_workers.lsast.generator import new_generator
from teacher_workers.models import TeacherModel, load_teacher

SETTINGS = {"steps": 10, "strength": 0.45, "control_scale": 0.6, "guidance": 7.5}


class Routed:
    """A cross-attention processor that attends to its layer group's context (LSAST.md
    section 1: input blocks take the stage's first prompt, the middle block the second, output
    blocks the third); the group's context is looked up at call time in `table`."""

    def __init__(self, group: int, table: dict[int, torch.Tensor]) -> None:
        self.group, self.table, self.plain = group, table, AttnProcessor()

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.plain(attn, hidden_states, self.table[self.group], attention_mask, temb)


def route(model: torch.nn.Module, table: dict[int, torch.Tensor]) -> dict:
    """Give every attn2 of `model` a `Routed` processor; returns the processors to restore."""
    before = model.attn_processors
    groups = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    model.set_attn_processor(
        {
            name: Routed(groups[name.split(".")[0]], table) if ".attn2." in name else processor
            for name, processor in before.items()
        }
    )
    return before


def prompt_contexts(teacher: TeacherModel, prompts: torch.Tensor) -> torch.Tensor:
    """C_i: CLIP("*") with P*_i (rounded to float32, as the authors' code) written into the
    placeholder's token embedding before the encoder; [n, L, D]."""
    tokens, encoder = teacher.prompt_tokens, teacher.text_encoder
    ids = tokens.placeholder.repeat(len(prompts), 1)
    at = (ids == tokens.placeholder_id).nonzero()

    def write(module, args, out):
        out = out.clone()
        out[at[:, 0], at[:, 1]] = prompts.float().to(out.dtype)[at[:, 0]]
        return out

    hook = encoder.get_input_embeddings().register_forward_hook(write)
    try:
        return encoder(ids)[0]
    finally:
        hook.remove()


@torch.no_grad()
def reference_sample(teacher, controlnet, generator, z0, noise, hint, settings) -> torch.Tensor:
    """LDM's img2img: DDIM grid arange(0, 1000, 1000 // S) + 1; t_enc = int(strength * S);
    noise to the grid's t_enc-th step; denoise over grid[:t_enc] reversed with
    ControlNet(cond only, scaled) added to both CFG halves, eps = eu + g (ec - eu), eta 0."""
    steps, alphas = settings["steps"], teacher.alphas_cumprod.double()
    grid = [t + 1 for t in range(0, 1000, 1000 // steps)]
    t_enc = int(settings["strength"] * steps)
    a = float(alphas[grid[t_enc]])
    x = math.sqrt(a) * z0 + math.sqrt(1 - a) * noise
    cond = prompt_contexts(teacher, generator())
    uncond = teacher.text_encoder(teacher.prompt_tokens.empty)[0]
    table: dict[int, torch.Tensor] = {}
    restore = [(model, route(model, table)) for model in (teacher.unet, controlnet)]
    try:
        for i in reversed(range(t_enc)):
            t = grid[i]
            s = t // 100
            picked = [cond[s + k][None] for k in range(3)]  # the code's sliding window
            table.update(enumerate(picked))
            down, mid = controlnet(
                x, t, encoder_hidden_states=picked[0], controlnet_cond=hint, return_dict=False
            )
            scale = settings["control_scale"]
            down, mid = [r * scale for r in down], mid * scale
            table.update({k: torch.cat([uncond, c]) for k, c in enumerate(picked)})
            eps_u, eps_c = teacher.unet(
                torch.cat([x, x]),
                t,
                encoder_hidden_states=table[0],
                down_block_additional_residuals=[torch.cat([r, r]) for r in down],
                mid_block_additional_residual=torch.cat([mid, mid]),
            ).sample.chunk(2)
            eps = eps_u + settings["guidance"] * (eps_c - eps_u)
            a_t = float(alphas[t])
            a_prev = float(alphas[grid[i - 1]]) if i > 0 else float(alphas[0])
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    finally:
        for model, processors in restore:
            model.set_attn_processor(processors)
    return x


@pytest.fixture(scope="module")
def setup():
    teacher = load_teacher("tiny", dtype=torch.float64, text_encoder=True)
    controlnet = load_controlnet("tiny", teacher.unet, torch.float64, "cpu")
    torch.manual_seed(1)  # a trained ControlNet: non-zero residuals, so its scale shows
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(conv.weight, std=0.2)
    generator = new_generator(teacher).eval()
    rng = torch.Generator().manual_seed(3)
    z0 = torch.randn(1, 4, 8, 8, generator=rng, dtype=torch.float64)
    noise = torch.randn(1, 4, 8, 8, generator=rng, dtype=torch.float64)
    images = torch.rand(1, 3, 64, 64, generator=rng, dtype=torch.float64)
    hint = canny_hint(images, 50, 100).double()
    return teacher, controlnet, generator, z0, noise, hint


def engine_sample(setup, settings) -> torch.Tensor:
    teacher, controlnet, generator, z0, noise, hint = setup
    engine = LSASTEngine(teacher, controlnet, LSASTConfig(resolution=64, **settings))
    cond = engine.style_contexts(generator)[None]
    return engine.sample(z0, noise, hint, cond)


def test_the_engine_agrees_with_the_reference_loop(setup):
    teacher, controlnet, generator, z0, noise, hint = setup
    expected = reference_sample(teacher, controlnet, generator, z0, noise, hint, SETTINGS)
    got = engine_sample(setup, SETTINGS)
    assert (got - expected).abs().max() < 1e-9
    # the check can fail: the scale and the start each move the result far above that
    other_scale = reference_sample(
        teacher, controlnet, generator, z0, noise, hint, {**SETTINGS, "control_scale": 1.0}
    )
    assert (other_scale - expected).abs().max() > 1e-4
