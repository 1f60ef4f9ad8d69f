"""LSAST prompt space on tiny random models (float64): the generator, the stage map, prompt
injection before the text encoder, and the grouped cross-attention processors."""

import json

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from common.errors import UserError
from teacher_workers.lsast.attention import ContextStore, contexts, install_grouped
from teacher_workers.lsast.generator import (
    LSASTPromptGenerator,
    generator_bytes,
    generator_from_bytes,
    new_generator,
)
from teacher_workers.lsast.prompts import PromptEncoder, stage, stage_prompts
from teacher_workers.model_choice import CONFIG_DIR
from teacher_workers.models import TeacherModel, load_teacher


@pytest.fixture(scope="module")
def teacher() -> TeacherModel:
    return load_teacher("tiny", dtype=torch.float64, text_encoder=True)


@pytest.fixture(scope="module")
def encoder(teacher) -> PromptEncoder:
    return PromptEncoder(teacher.text_encoder, teacher.prompt_tokens)


def test_generator_is_the_closed_form_and_trains_only_value_paths(teacher):
    gen = new_generator(teacher).eval()
    prompts = gen()
    assert prompts.shape == (30, 32)
    block, x0 = gen.attention, gen.initial_embeddings.view(1, 1, 32)
    # one token: each softmax is exactly 1, so attention is to_out(to_v(.))
    o1 = block.attn1.to_out(block.attn1.to_v(block.norm1(x0)))
    o2 = block.attn2.to_out(block.attn2.to_v(x0))
    closed = block.ff(block.norm3(x0 + o1 + o2)).view(30, 32)
    assert torch.allclose(prompts, closed, atol=1e-12)
    prompts.square().sum().backward()
    for name in ("attn1.to_q", "attn1.to_k", "attn2.to_q", "attn2.to_k", "norm2"):
        for p in block.get_submodule(name).parameters():
            assert torch.equal(p.grad, torch.zeros_like(p)), name
    assert block.ff.net[2].weight.grad.abs().sum() > 0
    assert block.attn1.to_v.weight.grad.abs().sum() > 0
    assert not gen.initial_embeddings.requires_grad
    assert torch.equal(
        gen.initial_embeddings[0], teacher.text_encoder.get_input_embeddings().weight[320]
    )


def test_generator_has_the_authors_size_and_round_trips_as_safetensors(teacher):
    with torch.device("meta"):
        full = LSASTPromptGenerator(torch.zeros(1, 768))
    assert sum(p.numel() for p in full.parameters()) == 78_678_528
    gen = new_generator(teacher, seed=3).eval()
    loaded = generator_from_bytes(generator_bytes(gen), "prompts.safetensors").eval()
    assert set(loaded.state_dict()) >= {
        "attention.attn1.to_out.0.weight",
        "attention.ff.net.0.proj.bias",
    }
    assert torch.equal(loaded(), gen())
    with pytest.raises(UserError, match="is not a safetensors prompt file"):
        generator_from_bytes(b"not safetensors", "prompts.safetensors")


def test_stage_map_code_and_paper():
    assert [stage(t) for t in (0, 99, 100, 999)] == [0, 0, 1, 9]
    assert stage_prompts(999, "code") == (9, 10, 11)
    assert stage_prompts(999, "paper") == (27, 28, 29)
    assert stage_prompts(250, "code") == (2, 3, 4)
    assert stage_prompts(250, "paper") == (6, 7, 8)
    assert [stage(t) for t in range(681, 0, -20)] == [s for s in range(6, -1, -1) for _ in range(5)]
    with pytest.raises(ValueError):
        stage(1000)


def test_injection_happens_before_the_text_encoder(teacher, encoder):
    tokens = teacher.prompt_tokens
    ids = tokens.placeholder
    plain = teacher.text_encoder(ids)[0]
    own = teacher.text_encoder.get_input_embeddings().weight[tokens.placeholder_id]
    same = encoder.encode(own.expand(30, -1))
    assert torch.allclose(same, plain.expand(30, -1, -1), atol=1e-6)
    prompts = torch.randn(30, 32, dtype=torch.float64, requires_grad=True)
    ctx = encoder.encode(prompts)
    # causal mask: tokens before the placeholder (BOS) do not see it; the rest do
    assert torch.allclose(ctx[:, :1], plain[:, :1].expand(30, -1, -1), atol=1e-12)
    assert not torch.allclose(ctx[0, 1:], ctx[1, 1:])
    ctx.square().sum().backward()
    assert prompts.grad.abs().sum() > 0
    empty = encoder.encode_empty()
    assert torch.equal(empty, teacher.text_encoder(tokens.empty)[0])
    assert not any(p.requires_grad for p in teacher.text_encoder.parameters())


def grouped_models(teacher):
    """A tiny UNet and ControlNet sharing one context store, as the engine installs them."""
    unet = UNet2DConditionModel.from_config(teacher.unet.config).double().eval()
    unet.load_state_dict(teacher.unet.state_dict())
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 16, 16)
    )
    controlnet = controlnet.double().eval()
    for module in controlnet.controlnet_down_blocks:  # non-zero residuals: they must move too
        torch.nn.init.normal_(module.weight, std=0.1)
    torch.nn.init.normal_(controlnet.controlnet_mid_block.weight, std=0.1)
    return unet, controlnet


def test_grouped_processors_partition_cross_attention(teacher):
    with torch.device("meta"):
        sd15 = UNet2DConditionModel.from_config(
            json.loads((CONFIG_DIR / "sd15/unet.json").read_text())
        )
    assert install_grouped(sd15, ContextStore()) == [6, 1, 9]
    unet, controlnet = grouped_models(teacher)
    assert install_grouped(unet, ContextStore()) == [6, 1, 9]
    assert install_grouped(controlnet, ContextStore()) == [6, 1, 0]
    assert all(
        isinstance(p, AttnProcessor2_0)
        for name, p in unet.attn_processors.items()
        if ".attn1." in name
    )


@torch.no_grad()
def test_grouped_contexts_equal_a_plain_call_and_each_moves_the_output(teacher):
    unet, controlnet = grouped_models(teacher)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
    hint = torch.rand(1, 3, 64, 64, generator=generator, dtype=torch.float64)
    e = torch.randn(1, 77, 32, generator=generator, dtype=torch.float64)

    def run(ctx=None):
        down, mid = controlnet(x, 501, e, hint, return_dict=False)
        out = unet(
            x, 501, e, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        return torch.cat([out.flatten(), *(r.flatten() for r in down), mid.flatten()])

    plain = run()
    store = ContextStore()
    install_grouped(unet, store)
    install_grouped(controlnet, store)
    assert torch.equal(run(), plain)  # store empty: a no-op
    with contexts(store, (e, e, e)):
        assert torch.allclose(run(), plain, atol=1e-6)
    n_out = x.numel()
    for group in range(3):
        moved = [e, e, e]
        moved[group] = e + 0.5 * torch.randn(e.shape, generator=generator, dtype=torch.float64)
        with contexts(store, tuple(moved)):
            out = run()
        assert not torch.allclose(out[:n_out], plain[:n_out], atol=1e-6), group
        if group < 2:  # the ControlNet's residuals follow its down and mid contexts
            assert not torch.allclose(out[n_out:], plain[n_out:], atol=1e-6), group
        else:
            assert torch.allclose(out[n_out:], plain[n_out:], atol=1e-12)
    assert store.contexts is None
