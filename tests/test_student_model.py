"""The STTR student: config, size, shapes, positional encoding, content/style wiring, weight
init paths, the authors' checkpoint key map and our checkpoint format."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import s3fs
import torch
import torchvision
from torch import nn

from common.errors import UserError
from student.authors_checkpoint import authors_key_map
from student.checkpoint import load_student, resolve_checkpoint, save_student
from student.inference import encode_style, resolve_precision, stylize
from student.model import STTR, STTRConfig, build_sttr, to_tokens
from student.position_encoding import PositionEmbeddingSine
from student.train_config import TrainConfig, check_weights
from student.train_loop import fresh_student
from student.transformer import Transformer

SMALL = STTRConfig(enc_layers=1, dec_layers=1)


def randomize_buffers(model: nn.Module, seed: int = 0) -> None:
    """Give every float buffer (frozen and running BatchNorm stats) non-default values, so
    that loading tests cover buffers as well as parameters."""
    generator = torch.Generator().manual_seed(seed)
    for buffer in model.buffers():
        if buffer.is_floating_point():
            buffer.copy_(0.9 + 0.2 * torch.rand(buffer.shape, generator=generator))


@pytest.fixture(scope="module")
def full_model() -> STTR:
    torch.manual_seed(0)
    return build_sttr(STTRConfig(), init="scratch")


@pytest.fixture(scope="module")
def small_model() -> STTR:
    """A 1+1-layer student in eval mode with non-default buffers (tests must not change it)."""
    torch.manual_seed(0)
    model = build_sttr(SMALL, init="scratch")
    randomize_buffers(model)
    return model.eval()


@pytest.mark.parametrize(
    "fields",
    [
        {"d_model": 250},  # not divisible by 8 heads
        {"d_model": 18, "nheads": 2},  # not a multiple of 4
        {"nheads": 0},
        {"enc_layers": 0},
        {"dec_layers": 1.5},
        {"dim_feedforward": True},
        {"dropout": 1.0},
        {"dropout": "0.1"},
    ],
)
def test_config_rejects_bad_values(fields: dict) -> None:
    with pytest.raises(ValueError, match="STTRConfig"):
        STTRConfig(**fields)


def test_parameter_count_matches_the_authors_model(full_model: STTR) -> None:
    count = sum(p.numel() for p in full_model.parameters())
    assert abs(count - 45.6e6) / 45.6e6 < 0.01, count


@pytest.mark.parametrize(
    ("content_hw", "style_hw"), [((64, 96), (128, 64)), ((128, 128), (64, 96))]
)
def test_output_has_the_content_shape(
    small_model: STTR, content_hw: tuple[int, int], style_hw: tuple[int, int]
) -> None:
    content = torch.randn(2, 3, *content_hw)
    style = torch.randn(2, 3, *style_hw)
    with torch.no_grad():
        out = small_model(content, style)
    assert out.shape == content.shape
    assert torch.isfinite(out).all()


def test_sizes_must_be_multiples_of_32(small_model: STTR) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        small_model(torch.randn(1, 3, 64, 80), torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="batch sizes differ"):
        small_model(torch.randn(2, 3, 64, 64), torch.randn(1, 3, 64, 64))
    with torch.no_grad():
        encoded = small_model.encode_style(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="content height and width must be multiples of 32"):
        small_model(torch.randn(1, 3, 64, 80), encoded)
    with pytest.raises(ValueError, match="batch sizes differ: content 2, style 1"):
        small_model(torch.randn(2, 3, 64, 64), encoded)


def test_position_encoding_known_values() -> None:
    pos = PositionEmbeddingSine(num_pos_feats=128)(torch.zeros(1, 7, 2, 3))
    assert pos.shape == (1, 256, 2, 3)
    # y is 1/2 and 2/2 of 2*pi; x is 1/3, 2/3, 3/3 of 2*pi. Channel 1 = cos(y), 129 = cos(x).
    assert torch.allclose(pos[0, 1, :, 0], torch.tensor([-1.0, 1.0]), atol=1e-5)
    assert torch.allclose(pos[0, 129, 0], torch.tensor([-0.5, -0.5, 1.0]), atol=1e-5)
    assert torch.allclose(pos[0, 128, 0, :2], torch.tensor([0.8660254, -0.8660254]), atol=1e-5)
    # Every channel against DETR's formula written out by hand.
    for c in range(256):
        axis, i = divmod(c, 128)
        freq = 10000 ** (2 * (i // 2) / 128)
        for r in range(2):
            for k in range(3):
                coord = (r + 1) / 2 if axis == 0 else (k + 1) / 3
                angle = coord * 2 * math.pi / freq
                expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
                assert pos[0, c, r, k].item() == pytest.approx(expected, abs=1e-4)


def tiny_transformer() -> Transformer:
    """A small transformer in float64, so equalities can be checked tightly."""
    torch.manual_seed(0)
    return Transformer(32, 4, 1, 2, 64, dropout=0.0).double().eval()


def seeded_randn(seed: int) -> Callable[..., torch.Tensor]:
    """randn in float64 from its own seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)


def test_decoder_queries_are_content_and_memory_is_style() -> None:
    """Content tokens are queries: permuting them permutes the output. Style tokens are an
    attended set: permuting them changes nothing. Swapping the roles breaks both."""
    transformer = tiny_transformer()
    rand = seeded_randn(1)
    content, content_pos = rand(2, 6, 32), rand(1, 6, 32)
    style, style_pos = rand(2, 5, 32), rand(1, 5, 32)
    with torch.no_grad():
        out = transformer(content, content_pos, style, style_pos)
        pc, ps = torch.tensor([3, 0, 5, 1, 4, 2]), torch.tensor([4, 2, 0, 1, 3])
        out_pc = transformer(content[:, pc], content_pos[:, pc], style, style_pos)
        out_ps = transformer(content, content_pos, style[:, ps], style_pos[:, ps])
    assert out.shape == (2, 6, 32)
    assert torch.allclose(out_pc, out[:, pc], atol=1e-10)
    assert torch.allclose(out_ps, out, atol=1e-10)
    assert not torch.allclose(out_pc, out, atol=1e-3)


def test_positions_reach_queries_and_keys_but_never_values() -> None:
    """With every token identical, attention weights cannot matter (all values are equal),
    so the output ignores positions unless they leak into the values."""
    transformer = tiny_transformer()
    rand = seeded_randn(2)
    same_content = rand(1, 1, 32).expand(2, 6, 32)
    same_style = rand(1, 1, 32).expand(2, 5, 32)
    style = rand(2, 5, 32)

    def run(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        pos_c, pos_s = rand(1, 6, 32), rand(1, 5, 32)
        with torch.no_grad():
            return transformer(content, pos_c, style, pos_s)

    assert torch.allclose(run(same_content, same_style), run(same_content, same_style), atol=1e-10)
    assert not torch.allclose(run(same_content, style), run(same_content, style), atol=1e-3)
    encoder = transformer.encoder_layers[0]
    with torch.no_grad():  # the style encoder's self-attention sees positions too
        assert not torch.allclose(encoder(style, rand(1, 5, 32)), encoder(style, rand(1, 5, 32)))


def test_model_feeds_content_tokens_as_queries(small_model: STTR, monkeypatch) -> None:
    seen: dict[str, object] = {}
    hooks = [
        small_model.content_proj.register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("content", to_tokens(out))
        ),
        small_model.style_proj.register_forward_hook(
            lambda _m, _i, out: seen.__setitem__("style", to_tokens(out))
        ),
    ]
    transformer = small_model.transformer
    for name in ("encode", "decode"):  # record each call's arguments, then run it
        method = getattr(transformer, name)
        monkeypatch.setattr(
            transformer, name, lambda *a, _m=method, _n=name: seen.__setitem__(_n, a) or _m(*a)
        )
    with torch.no_grad():
        small_model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 256, 256))  # 8x8 tokens each
    for hook in hooks:
        hook.remove()
    queries, _, memory, _ = seen["decode"]
    assert torch.equal(queries, seen["content"])
    assert torch.equal(seen["encode"][0], seen["style"])  # the encoder reads the style tokens
    assert torch.equal(memory, transformer.encode(*seen["encode"]))  # and the decoder its output


def test_a_style_encoded_once_gives_the_same_images_without_its_encoder(
    small_model: STTR,
) -> None:
    """A folder stylized in one style encodes it once: the outputs must not change."""
    generator = torch.Generator().manual_seed(4)
    style = torch.rand(3, 80, 50, generator=generator)
    contents = [
        torch.rand(3, 64, 96, generator=generator),
        torch.rand(3, 40, 70, generator=generator),
    ]
    expected = [stylize(small_model, content, style) for content in contents]
    encoded = encode_style(small_model, style)
    calls = []
    hook = small_model.style_encoder.register_forward_hook(lambda *_: calls.append(1))
    got = [stylize(small_model, content, encoded) for content in contents]
    hook.remove()
    assert calls == []
    for out, reference in zip(got, expected, strict=True):
        torch.testing.assert_close(out, reference, atol=0, rtol=0)


def test_output_depends_on_both_inputs(small_model: STTR) -> None:
    torch.manual_seed(3)
    content, style = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = small_model(content, style)
        new_style = small_model(content, torch.randn(1, 3, 64, 64))
        new_content = small_model(torch.randn(1, 3, 64, 64), style)
    assert (out - new_style).abs().max() > 1e-4
    assert (out - new_content).abs().max() > 1e-4


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded torchvision ResNet-50 state dict, BatchNorm statistics included."""
    torch.manual_seed(0)
    pretrained = torchvision.models.resnet50()
    randomize_buffers(pretrained)
    path = tmp_path_factory.mktemp("resnet") / "resnet50.pth"
    torch.save(pretrained.state_dict(), path)
    return path


@pytest.fixture
def no_weights_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache and downloads off; returns the cache's checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def assert_encoders_hold(model: STTR, path: Path) -> None:
    want = torch.load(path, weights_only=True)
    for encoder, last in ((model.content_encoder, "layer2"), (model.style_encoder, "layer4")):
        got = encoder.state_dict()
        assert any(key.startswith(last) for key in got)
        for key, value in got.items():
            assert torch.equal(value, want[key]), key


def test_imagenet_init_loads_both_encoders_from_a_file(
    resnet_file: Path, no_weights_anywhere: Path
) -> None:
    model = build_sttr(SMALL, init="imagenet", backbone_weights=str(resnet_file))
    assert_encoders_hold(model, resnet_file)


def test_imagenet_init_finds_the_torch_hub_cache(
    resnet_file: Path, no_weights_anywhere: Path
) -> None:
    no_weights_anywhere.mkdir(parents=True)
    (no_weights_anywhere / "resnet50-0676ba61.pth").symlink_to(resnet_file)  # torchvision's name
    assert_encoders_hold(build_sttr(SMALL, init="imagenet"), resnet_file)


def test_imagenet_init_offline_warns_once(
    no_weights_anywhere: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        model = build_sttr(SMALL, init="imagenet")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "random init" in warnings[0]
    assert "resnet50-0676ba61.pth" in warnings[0] and "--backbone-weights" in warnings[0]
    assert isinstance(model, STTR)


def test_bad_backbone_weights_are_user_errors(tmp_path: Path, no_weights_anywhere: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="as ResNet-50 weights"):
        build_sttr(SMALL, init="imagenet", backbone_weights=str(tmp_path / "junk.pth"))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "vgg.pth")
    with pytest.raises(UserError, match=r"ResNet-50 weights: it has no conv1\.weight"):
        build_sttr(SMALL, init="imagenet", backbone_weights=str(tmp_path / "vgg.pth"))


# Their key -> our key, written out by hand from the authors' module names (DETR/STTR) and ours.
AUTHORS_TO_OURS = {
    "backbone_content.body.conv1.weight": "content_encoder.conv1.weight",
    "backbone_content.body.bn1.running_mean": "content_encoder.bn1.running_mean",
    "backbone_content.body.layer1.0.downsample.1.weight":
        "content_encoder.layer1.0.downsample.1.weight",
    "backbone_content.body.layer2.3.bn3.running_var": "content_encoder.layer2.3.bn3.running_var",
    "backbone_style.body.layer3.5.bn2.bias": "style_encoder.layer3.5.bn2.bias",
    "backbone_style.body.layer4.2.conv3.weight": "style_encoder.layer4.2.conv3.weight",
    "input_proj_c.weight": "content_proj.weight",
    "input_proj_c.bias": "content_proj.bias",
    "input_proj_s.weight": "style_proj.weight",
    "input_proj_s.bias": "style_proj.bias",
    "transformer.encoder.layers.0.self_attn.in_proj_weight":
        "transformer.encoder_layers.0.self_attn.in_proj_weight",
    "transformer.encoder.layers.5.self_attn.in_proj_weight":
        "transformer.encoder_layers.5.self_attn.in_proj_weight",
    "transformer.encoder.layers.5.self_attn.out_proj.bias":
        "transformer.encoder_layers.5.self_attn.out_proj.bias",
    "transformer.encoder.layers.3.linear1.weight": "transformer.encoder_layers.3.linear1.weight",
    "transformer.encoder.layers.0.norm1.bias": "transformer.encoder_layers.0.norm1.bias",
    "transformer.encoder.layers.0.norm2.bias": "transformer.encoder_layers.0.norm2.bias",
    "transformer.encoder.layers.5.norm2.weight": "transformer.encoder_layers.5.norm2.weight",
    "transformer.decoder.layers.2.self_attn.in_proj_bias":
        "transformer.decoder_layers.2.self_attn.in_proj_bias",
    "transformer.decoder.layers.5.multihead_attn.in_proj_weight":
        "transformer.decoder_layers.5.cross_attn.in_proj_weight",
    "transformer.decoder.layers.5.multihead_attn.out_proj.weight":
        "transformer.decoder_layers.5.cross_attn.out_proj.weight",
    "transformer.decoder.layers.4.linear2.bias": "transformer.decoder_layers.4.linear2.bias",
    "transformer.decoder.layers.1.norm2.weight": "transformer.decoder_layers.1.norm2.weight",
    "transformer.decoder.layers.0.norm3.weight": "transformer.decoder_layers.0.norm3.weight",
    "transformer.decoder.layers.5.norm3.bias": "transformer.decoder_layers.5.norm3.bias",
    "transformer.decoder.norm.weight": "transformer.decoder_norm.weight",
    "transformer.decoder.norm.bias": "transformer.decoder_norm.bias",
    "output_proj.weight": "output_proj.weight",
    "output_proj.bias": "output_proj.bias",
    "tail.0.net.0.running_mean": "tail.0.res.net.0.running_mean",
    "tail.0.net.0.num_batches_tracked": "tail.0.res.net.0.num_batches_tracked",
    "tail.0.net.2.weight": "tail.0.res.net.2.weight",
    "tail.3.weight": "tail.0.conv.weight",
    "tail.3.bias": "tail.0.conv.bias",
    "tail.4.net.5.weight": "tail.1.res.net.5.weight",
    "tail.7.weight": "tail.1.conv.weight",
    "tail.8.net.8.bias": "tail.2.res.net.8.bias",
    "tail.11.weight": "tail.2.conv.weight",
}  # fmt: skip


def test_authors_key_map_uses_their_names(full_model: STTR) -> None:
    key_map = authors_key_map(full_model)
    assert len(key_map) == len(full_model.state_dict())  # one-to-one
    for their_key, our_key in AUTHORS_TO_OURS.items():
        assert key_map[their_key] == our_key
    assert not any(key.startswith("backbone_content.body.layer3") for key in key_map)
    # Their tail is Sequential([ResBlock, Upsample, ReflectionPad2d, Conv2d] * 3).
    tail_modules = {key.split(".")[1] for key in key_map if key.startswith("tail.")}
    assert tail_modules == {"0", "3", "4", "7", "8", "11"}


# ---- the authors' released model, rebuilt from their structure (not from our key map) ----


class AuthorsFrozenBatchNorm2d(nn.Module):
    """DETR's FrozenBatchNorm2d: four buffers (no num_batches_tracked)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))


def children(**modules: nn.Module) -> nn.Module:
    """A bare module holding the given named children (their container classes)."""
    parent = nn.Module()
    for name, module in modules.items():
        parent.add_module(name, module)
    return parent


def authors_backbone(last_layer: int) -> nn.Module:
    """DETR's Backbone: `body` keeps torchvision ResNet-50's children conv1 ... layer{last}."""
    resnet = torchvision.models.resnet50(weights=None, norm_layer=AuthorsFrozenBatchNorm2d)
    names = ["conv1", "bn1", "relu", "maxpool", *(f"layer{i}" for i in range(1, last_layer + 1))]
    return children(body=nn.ModuleDict({name: getattr(resnet, name) for name in names}))


class AuthorsResBlock(nn.Module):
    """STTR's tail block: full pre-activation bottleneck, inner width half the outer."""

    def __init__(self, outer: int, inner: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm2d(outer),
            nn.LeakyReLU(),
            nn.Conv2d(outer, inner, 1),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(),
            nn.Conv2d(inner, inner, 3, 1, 1),
            nn.BatchNorm2d(inner),
            nn.LeakyReLU(),
            nn.Conv2d(inner, outer, 1),
        )


def authors_model(config: STTRConfig) -> nn.Module:
    """STTR's ISTT_NOFOLD module tree: DETR layer names (those of torch's
    nn.TransformerEncoderLayer / nn.TransformerDecoderLayer) and a flat tail Sequential of
    [ResBlock, Upsample, ReflectionPad2d, Conv2d] x 3 from 512 channels down to 3."""
    d, ffn = config.d_model, config.dim_feedforward

    def layers(cls: type[nn.Module], n: int) -> nn.ModuleList:
        return nn.ModuleList(cls(d, config.nheads, ffn, batch_first=True) for _ in range(n))

    tail: list[nn.Module] = []
    for channels, out in ((512, 256), (256, 128), (128, 3)):
        tail += [
            AuthorsResBlock(channels, channels // 2),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, out, 3),
        ]
    return children(
        backbone_content=authors_backbone(2),
        backbone_style=authors_backbone(4),
        input_proj_c=nn.Conv2d(512, d, 1),
        input_proj_s=nn.Conv2d(2048, d, 1),
        transformer=children(
            encoder=children(layers=layers(nn.TransformerEncoderLayer, config.enc_layers)),
            decoder=children(
                layers=layers(nn.TransformerDecoderLayer, config.dec_layers),
                norm=nn.LayerNorm(d),
            ),
        ),
        output_proj=nn.Conv2d(d, 512, 1),
        tail=nn.Sequential(*tail),
    )


def distinct_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict with tensor number i filled with values in [i, i + 0.5): every
    value is random, and its integer part says which tensor it came from."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for i, (key, value) in enumerate(module.state_dict().items()):
        if value.is_floating_point():
            state[key] = i + torch.rand(value.shape, generator=generator) / 2
        else:  # BatchNorm's num_batches_tracked
            state[key] = torch.full_like(value, i)
    return state


@pytest.fixture(scope="module")
def authors_state() -> dict[str, torch.Tensor]:
    """The authors' full model (6 + 6 layers), every tensor with its own values."""
    return distinct_state(authors_model(STTRConfig()))


def save_authors_checkpoint(state: dict[str, torch.Tensor], path: Path) -> str:
    """Write `state` as the authors' `checkpoint0005.pth` layout; returns the path."""
    args = argparse.Namespace(lr=1e-4, backbone="resnet50", enc_layers=6, dec_layers=6)
    torch.save({"model": state, "epoch": 5, "args": args}, path)
    return str(path)


def test_authors_checkpoint_loads_every_tensor_exactly_once(
    authors_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """Loading a checkpoint laid out like the authors' released file puts each of their
    tensors into exactly one of our weights (a value bijection), and the hand-written pairs
    land where they should. Protects the key map against both sides sharing one mistake."""
    backbone_keys = [key for key in authors_state if key.startswith("backbone_")]
    assert not any(key.endswith("num_batches_tracked") for key in backbone_keys)
    path = save_authors_checkpoint(authors_state, tmp_path / "checkpoint0005.pth")
    ours = build_sttr(STTRConfig(), init=path).state_dict()
    their_keys = list(authors_state)
    source = {}  # our key -> the authors' key whose values it holds
    for key, value in ours.items():
        their_key = their_keys[int(value.flatten()[0])]  # the integer part names the tensor
        assert torch.equal(value, authors_state[their_key]), (key, their_key)
        source[key] = their_key
    assert sorted(source.values()) == sorted(their_keys)  # each of theirs landed exactly once
    for their_key, our_key in AUTHORS_TO_OURS.items():
        assert source[our_key] == their_key


def test_authors_checkpoint_problems_are_user_errors(
    authors_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="no such file"):
        build_sttr(SMALL, init=str(tmp_path / "missing.pth"))
    partial = {k: v for k, v in authors_state.items() if k != "transformer.decoder.norm.weight"}
    path = save_authors_checkpoint(partial, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"lacks 1 .*transformer\.decoder\.norm\.weight"):
        build_sttr(STTRConfig(), init=path)
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no 'model'"):
        build_sttr(SMALL, init=str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        build_sttr(SMALL, init=str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("where", ["local", "memory"])
def test_checkpoint_round_trip(small_model: STTR, tmp_path: Path, where: str) -> None:
    url = str(tmp_path / "epoch-1") if where == "local" else "memory://student-test/epoch-1"
    save_student(small_model, SMALL, url)
    loaded, config = load_student(url)
    assert config == SMALL
    assert not loaded.training
    content, style = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(loaded(content, style), small_model(content, style))


def test_not_a_checkpoint_is_a_user_error(small_model: STTR, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nowhere: no such checkpoint \(nothing is stored"):
        load_student(resolve_checkpoint(str(tmp_path / "nowhere")))
    # a run folder without Ray Train's record of a checkpoint, and a plain folder
    (tmp_path / "empty-run" / "epoch-0001").mkdir(parents=True)
    (tmp_path / "empty-run" / "metrics.jsonl").write_text("")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    for folder in ("empty-run", "plain"):
        with pytest.raises(UserError) as error:
            resolve_checkpoint(str(tmp_path / folder))
        assert str(error.value) == (
            f"{tmp_path / folder} is neither a student checkpoint (it has no config.json) nor a "
            "training run folder with a checkpoint in Ray Train's record"
        )
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(UserError):
        load_student(str(tmp_path / "file.txt"))
    save_student(small_model, SMALL, str(tmp_path / "bad"))
    (tmp_path / "bad" / "config.json").write_text('{"d_model": 256, "layers": 3}')
    with pytest.raises(UserError, match="not a valid student config"):
        load_student(str(tmp_path / "bad"))
    (tmp_path / "bad" / "config.json").write_text('{"enc_layers": 2, "dec_layers": 1}')
    with pytest.raises(UserError, match=r"does not match its config\.json: 12 weights missing"):
        load_student(str(tmp_path / "bad"))
    (tmp_path / "bad" / "config.json").write_text(
        '{"enc_layers": 1, "dec_layers": 1, "dim_feedforward": 64}'
    )
    shape_error = r"decoder_layers\.0\.linear1\.bias has shape \[2048\], expected \[64\]"
    with pytest.raises(UserError, match=shape_error):
        load_student(str(tmp_path / "bad"))


def test_workers_get_the_backbone_file_through_the_config(
    resnet_file: Path, no_weights_anywhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path travels in the TrainConfig, made absolute for workers in other folders."""
    monkeypatch.chdir(resnet_file.parent)
    config = TrainConfig(data="run", name="n", model=SMALL, backbone_weights=resnet_file.name)
    assert config.backbone_weights == str(resnet_file)
    assert check_weights(config, fresh=True) == config
    assert_encoders_hold(fresh_student(config), resnet_file)


def test_driver_warns_once_and_workers_start_from_scratch(
    no_weights_anywhere: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = TrainConfig(data="run", name="n", model=SMALL)
    with caplog.at_level(logging.WARNING):
        checked = check_weights(config, fresh=True)
        assert check_weights(config, fresh=False) == config  # resuming: the encoders are stored
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert checked.init == "scratch"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"init": "scratch", "backbone_weights": "r.pth"}, "--backbone-weights is for --init"),
        ({"loss": "l1", "vgg_weights": "v.pth"}, "--loss l1 has no Gram term"),
    ],
)
def test_weights_flags_that_would_be_ignored_are_errors(fields: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        TrainConfig(data="run", name="n", **fields)


def test_auto_precision_is_bf16_on_cuda_and_a_measured_choice_on_a_cpu() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("fp32", cuda) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        stylize(nn.Conv2d(3, 3, 1), torch.rand(3, 32, 32), torch.rand(3, 32, 32), "fp16")


def test_an_authors_checkpoint_in_object_storage_is_read_with_the_runs_options(
    s3_bucket: tuple[str, dict], tmp_path: Path
) -> None:
    """`--init s3://...` on a store of its own endpoint: the storage options reach the read."""
    url, options = s3_bucket
    state = distinct_state(authors_model(SMALL))
    local = save_authors_checkpoint(state, tmp_path / "checkpoint0005.pth")
    s3fs.S3FileSystem(**options).put_file(local, f"{url}/checkpoint0005.pth")
    loaded = build_sttr(SMALL, init=f"{url}/checkpoint0005.pth", options=options).state_dict()
    expected = build_sttr(SMALL, init=local).state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())
