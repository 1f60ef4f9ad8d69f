"""LSAST inference on tiny random models (float64): schedule and img2img start, DDIM, the
ControlNet's residuals, classifier-free guidance, the canny hint and the whole engine."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from teacher_workers.ddim import ddim_move
from teacher_workers.lsast.attention import contexts
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.control import canny_hint, load_controlnet
from teacher_workers.lsast.engine import LSASTEngine, lsast_scheduler
from teacher_workers.lsast.generator import new_generator
from teacher_workers.models import TeacherModel, load_teacher

FAST = {"steps": 4, "strength": 0.5, "resolution": 64}  # denoise 251 and 1, noise at 501


@pytest.fixture(scope="module")
def teacher() -> TeacherModel:
    return load_teacher("tiny", dtype=torch.float64, text_encoder=True)


@pytest.fixture(scope="module")
def contents() -> torch.Tensor:
    """Two smooth 64x64 images with edges: bars of colour over a gradient."""
    low = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = F.interpolate(low, size=64, mode="bilinear", align_corners=False)
    images[:, :, 20:40, 10:30] = 0.9
    return images


def engine(teacher, controlnet="tiny", randomise=False, **overrides) -> LSASTEngine:
    """An engine on the shared tiny teacher; `randomise` gives the ControlNet non-zero outputs."""
    net = load_controlnet(controlnet, teacher.unet, torch.float64, "cpu")
    if randomise:
        torch.manual_seed(1)
        for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            torch.nn.init.normal_(conv.weight, std=0.2)
    return LSASTEngine(teacher, net, LSASTConfig(**{**FAST, **overrides}))


def test_schedule_and_the_701_681_start(teacher):
    scheduler = lsast_scheduler(teacher.scheduler_config, 50)
    expected = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert torch.allclose(scheduler.betas.double(), expected, atol=1e-9)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))
    full = engine(teacher, **{"steps": 50, "strength": 0.7})
    assert full.timesteps == list(range(681, 0, -20)) and len(full.timesteps) == 35
    assert full.noise_timestep == 701
    with pytest.raises(UserError, match="denoising steps"):
        LSASTConfig(strength=1.0)


def test_ddim_step_is_the_hand_formula(teacher):
    scheduler = lsast_scheduler(teacher.scheduler_config, 50)
    alphas = teacher.alphas_cumprod
    x, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    for t, prev in ((681, float(alphas[661])), (1, float(alphas[0]))):
        stepped = scheduler.step(eps, t, x, eta=0.0).prev_sample
        assert torch.allclose(stepped, ddim_move(x, eps, float(alphas[t]), prev), atol=1e-5)


def test_fresh_controlnet_changes_nothing_and_a_trained_one_does(teacher, contents):
    plain, trained = engine(teacher), engine(teacher, randomise=True)
    cond = plain.style_contexts(new_generator(teacher))[None].expand(2, -1, -1, -1)
    hint = canny_hint(contents)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    unet = teacher.unet
    with torch.no_grad():
        eps = plain.denoise_step(x, 251, hint, cond)
        store_contexts = [
            torch.cat([plain.uncond_context().expand(2, -1, -1), cond[:, k]]) for k in (2, 3, 4)
        ]
        with plain.attached(), contexts(plain.store, tuple(store_contexts)):
            u, c = unet(torch.cat([x, x]), 251, store_contexts[0]).sample.chunk(2)
        assert torch.allclose(eps, u + 10 * (c - u), atol=1e-10)  # zero residuals: no effect

        calls, residuals = [], []
        controlnet_hook = trained.controlnet.register_forward_hook(
            lambda m, args, kwargs, out: calls.append(args[0].shape[0]), with_kwargs=True
        )
        unet_hook = unet.register_forward_pre_hook(
            lambda m, args, kwargs: residuals.append(kwargs["mid_block_additional_residual"]),
            with_kwargs=True,
        )
        try:
            moved = trained.denoise_step(x, 251, hint, cond)
        finally:
            controlnet_hook.remove()
            unet_hook.remove()
    assert not torch.allclose(moved, eps, atol=1e-6)
    assert calls == [2]  # once per step, on the conditional half only
    half_u, half_c = residuals[0].chunk(2)
    assert torch.equal(half_u, half_c) and half_u.abs().sum() > 0


def test_guidance_one_is_the_conditional_pass(teacher, contents):
    guided = engine(teacher, randomise=True, guidance=1.0)
    cond = guided.style_contexts(new_generator(teacher))[None]
    hint = canny_hint(contents[:1])
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        eps = guided.denoise_step(x, 1, hint, cond)
        ctx = tuple(cond[:, k] for k in (0, 1, 2))
        with guided.attached(), contexts(guided.store, ctx):
            down, mid = guided.controlnet(x, 1, ctx[0], hint.double(), return_dict=False)
            alone = teacher.unet(
                x,
                1,
                ctx[0],
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
    assert torch.allclose(eps, alone, atol=1e-10)


def test_canny_hint_runs_on_the_three_channel_image():
    image = torch.zeros(1, 3, 64, 64)
    image[0, 0, 16:48, 16:48] = 1.0  # a red square: no edge in a grey conversion's G/B alone
    hint = canny_hint(image)
    assert hint.shape == (1, 3, 64, 64) and set(hint.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(hint[:, 0], hint[:, 1]) and torch.equal(hint[:, 1], hint[:, 2])
    pixels = (image[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(hint[0, 0].numpy() * 255, cv2.Canny(pixels, 100, 200))
    assert torch.equal(canny_hint(image), hint)
    faint = image * 0.3  # an edge of 77 levels: above 100 in gradient only for low thresholds
    assert canny_hint(faint, 10, 20).sum() > canny_hint(faint, 400, 800).sum()


def test_stylize_pairs_gives_images_batch_invariant_and_repeatable(teacher, contents):
    lsast = engine(teacher, randomise=True, batch_size=3)
    styles = [new_generator(teacher, seed=s) for s in (0, 1)]
    pairs = [(0, 0), (1, 0), (0, 1)]
    passes = []
    images = lsast.stylize_pairs(contents, styles, pairs, passes.append)
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert sum(passes) == lsast.unet_passes(3) == 2
    one = engine(teacher, randomise=True, batch_size=1).stylize_pairs(contents, styles, [(0, 1)])
    assert torch.allclose(one[0], images[2], atol=1e-6)
    assert not torch.allclose(images[0], images[2], atol=1e-3)  # the style prompts matter


def test_the_unet_and_controlnet_get_their_own_attention_processors_back(teacher, contents):
    """After a run, and after a run interrupted inside a UNet call (the grouped processors
    installed), every attention layer of the UNet and the ControlNet has the very processor it
    had before: a teacher shared with StyleID or another engine is left as it was found."""
    lsast = engine(teacher)
    models = (teacher.unet, lsast.controlnet)
    before = [model.attn_processors for model in models]

    def unchanged() -> bool:
        now = [model.attn_processors for model in models]
        return all(
            a.keys() == b.keys() and all(a[name] is b[name] for name in b)
            for a, b in zip(now, before, strict=True)
        )

    styles = [new_generator(teacher)]
    lsast.stylize_pairs(contents[:1], styles, [(0, 0)])
    assert unchanged()

    def interrupt(*_) -> None:
        raise KeyboardInterrupt

    hook = teacher.unet.register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            lsast.stylize_pairs(contents[:1], styles, [(0, 0)])
    finally:
        hook.remove()
    assert unchanged()


def test_controlnet_names_are_checked(tmp_path):
    with pytest.raises(UserError, match="unknown ControlNet"):
        load_controlnet("not/a/hub/id", None, torch.float32, "cpu")
    with pytest.raises(UserError, match="cannot load ControlNet folder"):
        load_controlnet(str(tmp_path), None, torch.float32, "cpu")
