"""StyleID engine tests on the tiny random-weight teacher, in float64 so exactness is testable."""

import json

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from common.errors import UserError
from teacher_workers.ddim import ddim_move
from teacher_workers.model_choice import CONFIG_DIR
from teacher_workers.models import TeacherModel, cast, load_teacher
from teacher_workers.styleid.attention import (
    AttentionController,
    Injection,
    Mode,
    StyleIDAttnProcessor,
)
from teacher_workers.styleid.config import DEFAULT_LAYERS, StyleIDConfig
from teacher_workers.styleid.engine import StyleIDEngine, adain

STEPS = 8


@pytest.fixture(scope="module")
def teacher() -> TeacherModel:
    return load_teacher("tiny", dtype=torch.float64)


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """Three smooth content images and two style images, 64x64, values in [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(5, 3, 8, 8, generator=generator, dtype=torch.float64)
    smooth = F.interpolate(low, size=64, mode="bilinear", align_corners=False)
    return smooth[:3], smooth[3:]


def engine(teacher: TeacherModel, **overrides) -> StyleIDEngine:
    return StyleIDEngine(teacher, StyleIDConfig(steps=STEPS, **overrides))


def stock_unet_output(teacher: TeacherModel, x: torch.Tensor, t: int) -> torch.Tensor:
    """The UNet's output with diffusers' own processors everywhere."""
    teacher.unet.set_attn_processor(AttnProcessor2_0())
    prompt = teacher.prompt_embeds.expand(len(x), -1, -1)
    with torch.no_grad():
        return teacher.unet(x, t, encoder_hidden_states=prompt).sample


def test_reference_timestep_schedule(teacher):
    styleid = StyleIDEngine(teacher, StyleIDConfig(steps=50))
    assert styleid.inversion_steps == list(range(1, 1000, 20))
    assert styleid.sampling_steps == list(range(961, 0, -20))
    assert len(styleid.sampling_steps) == 49


def test_ddim_move_is_invertible_for_the_same_noise():
    x, eps = (
        torch.randn(2, 4, 3, 3, dtype=torch.float64),
        torch.randn(2, 4, 3, 3, dtype=torch.float64),
    )
    there = ddim_move(x, eps, 0.99, 0.3)
    assert torch.allclose(ddim_move(there, eps, 0.3, 0.99), x, atol=1e-12)


def test_adain_gives_each_sample_its_styles_channel_statistics():
    content = torch.randn(3, 4, 8, 8, dtype=torch.float64) * 3 + 1
    style = torch.randn(3, 4, 8, 8, dtype=torch.float64) * 0.5 - 2
    out = adain(content, style)
    assert torch.allclose(out.mean((2, 3)), style.mean((2, 3)), atol=1e-12)
    assert torch.allclose(out.std((2, 3)), style.std((2, 3)), atol=1e-12)
    # the spatial pattern is the content's: correlation 1 per channel
    centred = (out - out.mean((2, 3), keepdim=True)) / out.std((2, 3), keepdim=True)
    c_centred = (content - content.mean((2, 3), keepdim=True)) / content.std((2, 3), keepdim=True)
    assert torch.allclose(centred, c_centred, atol=1e-12)


def test_processor_computes_query_preservation_and_temperature():
    """The injected attention equals softmax(T * Q~ K^T / sqrt(d)) V written out by hand."""
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8).double().eval()
    hidden = torch.randn(2, 5, 16, dtype=torch.float64)
    q_c, k_s, v_s = (torch.randn(2, 7 if i else 5, 16, dtype=torch.float64) for i in range(3))
    controller = AttentionController(gamma=0.75, temperature=1.5, mode=Mode.INJECT)
    controller.injection = Injection({"a": q_c}, {"a": k_s}, {"a": v_s})
    with torch.no_grad():
        got = StyleIDAttnProcessor("a", controller)(attn, hidden)
        q = 0.75 * q_c + 0.25 * attn.to_q(hidden)
        heads = [slice(0, 8), slice(8, 16)]
        outs = [
            torch.softmax(1.5 * q[..., h] @ k_s[..., h].transpose(1, 2) / 8**0.5, -1) @ v_s[..., h]
            for h in heads
        ]
        expected = attn.to_out[0](torch.cat(outs, -1))
    assert torch.allclose(got, expected, atol=1e-12)


def test_processors_off_or_fed_their_own_features_leave_the_unet_unchanged(teacher, images):
    styleid = engine(teacher, gamma=1.0, temperature=1.0)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = stock_unet_output(teacher, x, 481)
    with styleid._attached():
        ctl = styleid.controller
        ctl.mode = Mode.OFF
        assert torch.allclose(styleid._eps(x, 481), expected, atol=1e-12)
        # capture this latent's own Q, K, V, then inject them back: gamma=1, T=1 is the identity
        ctl.mode, ctl.capture_kinds, ctl.capture_steps, ctl.captured = (
            Mode.CAPTURE,
            ("q", "k", "v"),
            frozenset({481}),
            {},
        )
        styleid._eps(x, 481)
        own = ctl.captured[481]
        ctl.mode = Mode.INJECT
        ctl.injection = Injection(
            {n: f["q"] for n, f in own.items()},
            {n: f["k"] for n, f in own.items()},
            {n: f["v"] for n, f in own.items()},
        )
        assert torch.allclose(styleid._eps(x, 481), expected, atol=1e-10)
        ctl.mode, ctl.injection = Mode.OFF, None


def test_the_unet_gets_its_own_attention_processors_back(teacher, images):
    """After a run, and after a run that fails half way, every attention layer has the very
    processor it had before: a shared teacher is left as the engine found it."""
    before = teacher.unet.attn_processors
    styleid = StyleIDEngine(teacher, StyleIDConfig(steps=2))
    contents, styles = images
    styleid.stylize_tile(contents[:1], styles[:1])
    assert teacher.unet.attn_processors == before

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        styleid.stylize_tile(contents[:1], styles[:1], progress=interrupt)
    after = teacher.unet.attn_processors
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)


def test_injection_changes_exactly_the_six_named_layers(teacher):
    """Re-run every attention module on the input it saw during an injected pass with diffusers'
    own processor: only the six injected attn1 layers compute something different."""
    styleid = engine(teacher)
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _, features = styleid.invert(x, ("q", "k", "v"))
    t = styleid.sampling_steps[0]
    seen = {}
    hooks = [
        module.register_forward_hook(
            lambda m, args, kwargs, out, name=name: seen.__setitem__(name, (args, kwargs, out)),
            with_kwargs=True,
        )
        for name, module in teacher.unet.named_modules()
        if isinstance(module, Attention)
    ]
    ctl = styleid.controller
    ctl.mode = Mode.INJECT
    other = {n: {k: torch.randn_like(v) for k, v in f.items()} for n, f in features[t].items()}
    ctl.injection = Injection(
        {n: f["q"] for n, f in other.items()},
        {n: f["k"] for n, f in other.items()},
        {n: f["v"] for n, f in other.items()},
    )
    try:
        with styleid._attached():
            styleid._eps(x, t)
    finally:
        for hook in hooks:
            hook.remove()
        ctl.mode, ctl.injection = Mode.OFF, None
    modules = dict(teacher.unet.named_modules())
    changed = set()
    for name, (args, kwargs, out) in seen.items():
        module = modules[name]
        module.set_processor(AttnProcessor2_0())
        with torch.no_grad():
            plain = module(*args, **kwargs)
        if not torch.allclose(plain, out, atol=1e-9):
            changed.add(name)
    assert len(seen) > 6
    assert changed == set(DEFAULT_LAYERS)


def test_tile_equals_single_pair_and_naive_path(teacher, images):
    contents, styles = images
    tiled = engine(teacher, batch_size=4).stylize_tile(
        contents, styles
    )  # 6 pairs, chunks of 4 and 2
    assert tiled.shape == (2, 3, 3, 64, 64)
    alone = engine(teacher, batch_size=1).stylize_tile(contents[2:3], styles[1:2])
    assert torch.allclose(tiled[1, 2], alone[0, 0], atol=1e-9)
    naive = engine(teacher).stylize_naive(contents, styles)
    assert torch.allclose(tiled, naive, atol=1e-9)
    assert tiled.min() >= 0.0 and tiled.max() <= 1.0


def test_different_style_changes_the_output(teacher, images):
    contents, styles = images
    out = engine(teacher).stylize_tile(contents[:1], styles)
    assert (out[0, 0] - out[1, 0]).abs().mean() > 1e-3


def test_ablation_switches_change_the_output(teacher, images):
    contents, styles = images
    full = engine(teacher).stylize_tile(contents[:1], styles[:1])
    for switch in ({"adain": False}, {"inject": False}):
        ablated = engine(teacher, **switch).stylize_tile(contents[:1], styles[:1])
        assert (full - ablated).abs().max() > 1e-4, switch


def test_outputs_are_deterministic_for_a_seed(teacher, images):
    contents, styles = images
    first = engine(teacher, encode="sample", seed=3).stylize_tile(contents[:1], styles[:1])
    again = engine(teacher, encode="sample", seed=3).stylize_tile(contents[:1], styles[:1])
    other = engine(teacher, encode="sample", seed=4).stylize_tile(contents[:1], styles[:1])
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-4
    rebuilt = load_teacher("tiny", dtype=torch.float64)
    assert torch.equal(
        engine(rebuilt).stylize_tile(contents[:1], styles[:1]),
        engine(teacher).stylize_tile(contents[:1], styles[:1]),
    )


def test_feature_memory_matches_sd15_figures():
    """Stored features per 512 px image in fp16: Q ~0.58 GB, K+V ~1.16 GB (SPEC section 3)."""
    config = json.loads((CONFIG_DIR / "sd15" / "unet.json").read_text())
    with torch.device("meta"):
        unet = cast(UNet2DConditionModel.from_config(config), None, torch.float16)
    scheduler = json.loads((CONFIG_DIR / "sd15" / "scheduler.json").read_text())
    teacher = TeacherModel(
        unet,
        None,
        torch.ones(1000, dtype=torch.float64),
        torch.zeros(1, 77, 768),
        scheduler,
        "meta",
    )
    styleid = StyleIDEngine(teacher, StyleIDConfig())
    per_step = 3 * 32 * 32 * 640 + 3 * 64 * 64 * 320
    assert styleid.feature_bytes(("q",), 512, 512) == 49 * per_step * 2
    assert styleid.feature_bytes(("k", "v"), 512, 512) == 2 * 49 * per_step * 2
    assert round(styleid.feature_bytes(("q",), 512, 512) / 1e9, 2) == 0.58


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 0},
        {"steps": -3},
        {"gamma": 1.5},
        {"temperature": 0},
        {"resolution": 100},
        {"resolution": 96},  # a multiple of 8 that the UNet cannot take (latents of 12)
        {"resolution": 32},
        {"encode": "noise"},
        {"batch_size": 0},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(UserError):
        StyleIDConfig(**bad)


def test_unknown_layer_is_refused(teacher):
    with pytest.raises(ValueError, match="not an attention layer"):
        StyleIDEngine(teacher, StyleIDConfig(layers=("up_blocks.9.attentions.0",)))


def test_cross_attention_layer_is_refused(teacher):
    layer = "up_blocks.2.attentions.0.transformer_blocks.0.attn2"
    with pytest.raises(ValueError, match="not a plain self-attention"):
        StyleIDEngine(teacher, StyleIDConfig(layers=(layer,)))


def test_unknown_model_is_a_user_error():
    for name in ("no-such-model", "./missing/dir", "a/b/c"):
        with pytest.raises(UserError, match="unknown model"):
            load_teacher(name)


def test_without_injection_the_engine_is_plain_ddim_inversion_then_sampling(teacher, images):
    """An independent float64 loop: hand-written inversion (its last step to t=999), then
    diffusers' DDIMScheduler.step from 751 down to t=1 (final alpha = alphas_cumprod[0])."""
    from diffusers import DDIMScheduler

    contents, _ = images
    styleid = engine(teacher, inject=False)
    z0 = styleid.encode(contents[:1])
    z_t, features = styleid.invert(z0)
    index = torch.zeros(1, dtype=torch.long)
    got = styleid.sample(z_t, features, features, index, index)
    scheduler = DDIMScheduler.from_config(teacher.scheduler_config)
    scheduler.set_timesteps(STEPS)
    alphas = scheduler.alphas_cumprod.double()
    x = z0
    up = sorted(int(t) for t in scheduler.timesteps)  # 1, 126, ..., 876
    for t, t_next in zip(up, [*up[1:], 999], strict=True):
        eps = stock_unet_output(teacher, x, t)
        x0 = (x - (1 - alphas[t]).sqrt() * eps) / alphas[t].sqrt()
        x = alphas[t_next].sqrt() * x0 + (1 - alphas[t_next]).sqrt() * eps
    assert torch.allclose(z_t, x, atol=1e-10)
    for t in up[-2::-1]:  # the reference skips the last inversion timestep
        x = scheduler.step(stock_unet_output(teacher, x, t), t, x, eta=0.0).prev_sample
    assert torch.allclose(got, x, atol=1e-10)


def test_posterior_sample_noise_is_per_image_and_batch_invariant(teacher, images):
    contents, _ = images
    styleid = engine(teacher, encode="sample", seed=5)
    together = styleid.encode(contents) - engine(teacher).encode(contents)
    alone = styleid.encode(contents[1:2]) - engine(teacher).encode(contents[1:2])
    assert torch.allclose(together[1], alone[0], atol=1e-12)
    assert (together[0] - together[1]).abs().max() > 1e-3


def styleid_attention_by_hand(
    attn: Attention,
    hidden: torch.Tensor,
    q_c: torch.Tensor,
    k_s: torch.Tensor,
    v_s: torch.Tensor,
    gamma: float,
    temperature: float,
) -> torch.Tensor:
    """softmax(T * Q~ K_s^T / sqrt(d)) V_s per head, Q~ = gamma Q_c + (1 - gamma) Q_cs, then
    the layer's output projection (SPEC section 3)."""
    q = gamma * q_c + (1 - gamma) * attn.to_q(hidden)  # [B, N, C]
    batch, tokens, channels = q.shape
    d = channels // attn.heads

    def split(x: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B, heads, N, d]
        return x.reshape(x.shape[0], x.shape[1], attn.heads, d).transpose(1, 2)

    weights = torch.softmax(temperature * split(q) @ split(k_s).transpose(-1, -2) / d**0.5, -1)
    out = (weights @ split(v_s)).transpose(1, 2).reshape(batch, tokens, channels)
    return attn.to_out[0](out)


def test_sampling_step_t_injects_the_features_recorded_at_t(teacher, images):
    """In the sampling UNet call at timestep t, each injected layer's output equals StyleID
    attention written out by hand from the Q (content) and K, V (style) that the same layer
    computed in the inversion UNet call at the same t. Hooks record the timestep each UNet call
    runs at and the projections each layer computes, independently of the engine's feature
    store. Protects against an off-by-one between capture and sampling (features of t +- 20
    injected at t), which the whole-image tests catch only by luck."""
    styleid = engine(teacher)
    contents, styles = images
    modules = dict(teacher.unet.named_modules())
    phase = ["content"]  # which pass the UNet calls belong to
    now: list[int] = []  # the timestep of each UNet call, in order
    projected: dict[tuple[str, int, str, str], torch.Tensor] = {}  # (phase, t, layer, kind)
    sampled: list[tuple[int, str, torch.Tensor, torch.Tensor]] = []  # (t, layer, input, output)

    def on_unet(_module, args, kwargs):
        now.append(int(kwargs["timestep"] if "timestep" in kwargs else args[1]))

    def on_projection(layer: str, kind: str):
        def hook(_module, _args, out):
            if phase[0] != "sample":
                projected[(phase[0], now[-1], layer, kind)] = out.clone()

        return hook

    def on_attention(layer: str):
        def hook(_module, args, kwargs, out):
            if phase[0] == "sample":
                hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                sampled.append((now[-1], layer, hidden.clone(), out.clone()))

        return hook

    hooks = [teacher.unet.register_forward_pre_hook(on_unet, with_kwargs=True)]
    for layer in DEFAULT_LAYERS:
        attn = modules[layer]
        hooks.append(attn.register_forward_hook(on_attention(layer), with_kwargs=True))
        for kind in ("q", "k", "v"):
            projection = getattr(attn, f"to_{kind}")
            hooks.append(projection.register_forward_hook(on_projection(layer, kind)))
    try:
        z_c, content_features = styleid.invert(styleid.encode(contents[:1]), ("q",))
        phase[0] = "style"
        z_s, style_features = styleid.invert(styleid.encode(styles[:1]), ("k", "v"))
        phase[0] = "sample"
        index = torch.zeros(1, dtype=torch.long)
        styleid.sample(adain(z_c, z_s), content_features, style_features, index, index)
    finally:
        for hook in hooks:
            hook.remove()

    gamma, temperature = styleid.config.gamma, styleid.config.temperature
    assert sorted({t for t, *_ in sampled}) == sorted(styleid.sampling_steps)
    assert len(sampled) == len(styleid.sampling_steps) * len(DEFAULT_LAYERS)
    for t, layer, hidden, out in sampled:
        with torch.no_grad():
            expected = styleid_attention_by_hand(
                modules[layer],
                hidden,
                projected[("content", t, layer, "q")],
                projected[("style", t, layer, "k")],
                projected[("style", t, layer, "v")],
                gamma,
                temperature,
            )
        assert torch.allclose(out, expected, atol=1e-10), (t, layer)
