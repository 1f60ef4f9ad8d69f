"""Loading the teacher's components: SD 1.5 from the Hub, a folder or a single-file checkpoint,
or a random-weight preset.

Presets (`tiny`, `sd15-random`) are built from configs shipped in `configs/`, so tests and GPU
benchmarks run where no weights can be downloaded. Only what StyleID needs is kept: the UNet,
the VAE, the alphas of the noise schedule and the text embedding of the empty prompt; LSAST,
which encodes learned prompts, also keeps the text encoder and the ids of its two prompts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from common.errors import UserError, first_line
from teacher_workers.model_choice import CONFIG_DIR, PRESETS, check_dtype, check_model_name
from teacher_workers.model_source import (
    check_folder,
    check_single_file,
    config_source,
    hub_hint,
    is_single_file,
    single_file_config,
)

if TYPE_CHECKING:
    from transformers import CLIPTextModel, PreTrainedTokenizerBase

    from teacher_workers.lsast.prompts import PromptTokens

log = logging.getLogger(__name__)

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
PROMPT_LENGTH = 77


@dataclass
class TeacherModel:
    """The frozen parts StyleID runs: UNet, VAE, schedule alphas and the empty-prompt embedding."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    alphas_cumprod: torch.Tensor  # [num_train_timesteps] float64, on the CPU
    prompt_embeds: torch.Tensor  # [1, 77, cross_attention_dim]
    scheduler_config: dict
    name: str
    text_encoder: CLIPTextModel | None = None  # kept only when asked for (LSAST)
    prompt_tokens: PromptTokens | None = None

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype


def parse_dtype(name: str) -> torch.dtype:
    """Torch dtype for a flag value; unknown names are a `UserError`."""
    check_dtype(name)
    return DTYPES[name]


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without a GPU is a `UserError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but no CUDA GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}") from None


def load_teacher(
    model: str,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    revision: str | None = None,
    seed: int = 0,
    config: str | None = None,
    text_encoder: bool = False,
) -> TeacherModel:
    """Teacher components for a preset name, a local diffusers directory, a Hub id or a
    single-file checkpoint configured by `config` (see `model_source.config_source`); with
    `text_encoder`, the frozen text encoder and prompt ids too."""
    check_model_name(model)
    device = torch.device(device)
    if model in PRESETS:
        teacher = _build_preset(model, seed, text_encoder)
    elif is_single_file(model):
        teacher = _load_single_file(model, config_source(model, config), revision, text_encoder)
    else:
        teacher = _load_pretrained(model, revision, dtype, text_encoder)
    modules = [teacher.unet, teacher.vae]
    if teacher.text_encoder is not None:
        modules.append(teacher.text_encoder)
    for module in modules:
        cast(module, device, dtype).eval().requires_grad_(False)
    teacher.prompt_embeds = teacher.prompt_embeds.to(device=device, dtype=dtype)
    return teacher


def tune(model: torch.nn.Module, compile: bool, channels_last: bool) -> None:
    """GPU speed switches for a UNet or ControlNet, in place: channels-last weights (convolutions
    on tensor cores skip layout transposes) and `torch.compile` of its forward. The engines'
    attention processors hold per-step state and are kept out of the compiled graphs
    (`torch.compiler.disable`), so a compiled model is not recompiled at every timestep."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        model.compile(dynamic=False)


def cast(module: torch.nn.Module, device: torch.device | str | None, dtype: torch.dtype):
    """Move/cast a diffusers model. nn.Module.to, not ModelMixin.to: the latter warns on every
    dtype cast, even for SD-1.x models that pin no module to float32."""
    return torch.nn.Module.to(module, device=device, dtype=dtype)


def _alphas(scheduler_config: dict) -> torch.Tensor:
    """alphas_cumprod of the training schedule, in float64 for exact DDIM arithmetic."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    return scheduler.alphas_cumprod.to(torch.float64)


def _build_preset(name: str, seed: int, text_encoder: bool) -> TeacherModel:
    """Random-weight UNet/VAE and prompt embedding with SD-1.x shapes, from the shipped configs;
    a random text encoder with hand-made prompt ids (there is no tokenizer) when asked."""
    folder = CONFIG_DIR / PRESETS[name]
    configs = {
        part: json.loads((folder / f"{part}.json").read_text())
        for part in ("unet", "vae", "scheduler")
    }
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(configs["unet"])
    vae = AutoencoderKL.from_config(configs["vae"])
    width = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randn(1, PROMPT_LENGTH, width, generator=generator)
    log.info(
        "built %s teacher with random weights (%.1fM UNet parameters)",
        name,
        sum(p.numel() for p in unet.parameters()) / 1e6,
    )
    teacher = TeacherModel(
        unet, vae, _alphas(configs["scheduler"]), prompt, configs["scheduler"], name
    )
    if text_encoder:
        from transformers import CLIPTextConfig, CLIPTextModel

        from teacher_workers.lsast.prompts import PromptTokens

        config = json.loads((folder / "text_encoder.json").read_text())
        config.pop("_class_name")
        teacher.text_encoder = CLIPTextModel(CLIPTextConfig(**config))
        teacher.prompt_tokens = PromptTokens.hand_made(config["vocab_size"])
    return teacher


def _load_pretrained(
    model: str, revision: str | None, dtype: torch.dtype, keep_text_encoder: bool
) -> TeacherModel:
    """SD-1.x components via `from_pretrained`; the text encoder is used once and dropped,
    unless `keep_text_encoder`.

    A folder is checked first, so a missing part or a damaged weight file is named in one
    line; a Hub id is read through the Hugging Face cache (offline with HF_HUB_OFFLINE=1).
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    is_folder = Path(model).is_dir()
    if is_folder:
        check_folder(Path(model), f"model folder {model}")
    where = f"model folder {model}" if is_folder else f"model {model!r} ({hub_hint()})"

    def load(part: str, loader: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return loader(model, subfolder=part, revision=revision, **kwargs)
        except Exception as exc:  # Hub, network and file errors all mean "cannot load this"
            raise UserError(f"cannot load {part}/ of {where}: {first_line(exc)}") from None

    unet = load("unet", UNet2DConditionModel.from_pretrained, torch_dtype=dtype)
    vae = load("vae", AutoencoderKL.from_pretrained, torch_dtype=dtype)
    scheduler_config = dict(load("scheduler", DDIMScheduler.load_config))
    tokenizer = load("tokenizer", CLIPTokenizer.from_pretrained)
    text_encoder = load("text_encoder", CLIPTextModel.from_pretrained)
    prompt = empty_prompt_embedding(tokenizer, text_encoder)
    teacher = TeacherModel(unet, vae, _alphas(scheduler_config), prompt, scheduler_config, model)
    if keep_text_encoder:
        keep_prompt_parts(teacher, tokenizer, text_encoder, where)
    return teacher


def keep_prompt_parts(
    teacher: TeacherModel,
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: CLIPTextModel,
    where: str,
) -> None:
    """Keep what LSAST's learned prompts go through: the text encoder and the prompt ids (a
    tokenizer that lacks LSAST's tokens: a `UserError` naming `where`)."""
    from teacher_workers.lsast.prompts import PromptTokens

    vocab_size = text_encoder.get_input_embeddings().num_embeddings
    teacher.prompt_tokens = PromptTokens.from_tokenizer(tokenizer, vocab_size, where)
    teacher.text_encoder = text_encoder


def _load_single_file(
    model: str, config: str, revision: str | None, keep_text_encoder: bool
) -> TeacherModel:
    """SD-1.x components from one LDM-layout checkpoint through diffusers' `from_single_file`,
    configured by a local folder (a Hub id is looked up in the cache only): nothing is fetched.

    Tensors keep the file's dtype (the caller casts the UNet and VAE); the text encoder runs in
    float32, as for a folder. The safety checker is not part of the teacher and is not loaded.
    """
    from diffusers import StableDiffusionPipeline

    path = Path(model).expanduser()
    check_single_file(path)
    folder = single_file_config(config, revision)
    try:
        pipeline = StableDiffusionPipeline.from_single_file(
            str(path),
            config=str(folder),
            local_files_only=True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except Exception as exc:  # shapes that do not fit the config, unreadable tensors, ...
        raise UserError(
            f"cannot load model file {path} with the config {folder}: {first_line(exc)}"
        ) from None
    prompt = empty_prompt_embedding(pipeline.tokenizer, pipeline.text_encoder.float())
    scheduler_config = dict(pipeline.scheduler.config)
    teacher = TeacherModel(
        pipeline.unet, pipeline.vae, _alphas(scheduler_config), prompt, scheduler_config, model
    )
    if keep_text_encoder:
        keep_prompt_parts(teacher, pipeline.tokenizer, pipeline.text_encoder, f"model file {path}")
    return teacher


def empty_prompt_embedding(
    tokenizer: PreTrainedTokenizerBase, text_encoder: CLIPTextModel
) -> torch.Tensor:
    """[1, max_length, width]: the text encoder's last hidden state for "", padded to the
    tokenizer's full length as SD pipelines pad every prompt (StyleID conditions on it)."""
    tokens = tokenizer(
        [""],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        return text_encoder(tokens.input_ids)[0]
