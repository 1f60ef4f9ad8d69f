"""A random-weight Stable Diffusion 1.x model in the Hub's own layout, for offline tests.

`StableDiffusionPipeline.save_pretrained` writes it, as for a real SD 1.5 folder:
`model_index.json`, `unet/`, `vae/` (the `tiny` preset's configs), `text_encoder/` (a small
`CLIPTextModel`), `tokenizer/` (a CLIP BPE tokenizer from vocabulary files written here, in
CLIP's layout) and `scheduler/` (the PNDM config SD 1.5 ships). `hub_cache` lays such a folder
out as a Hugging Face cache entry, so Hub ids resolve with `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from teacher_workers.model_choice import CONFIG_DIR

# scheduler/scheduler_config.json of stable-diffusion-v1-5/stable-diffusion-v1-5, as shipped
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}
PROMPT_LENGTH = 77
SPECIAL_TOKENS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
}
MERGES = (("c", "a"), ("ca", "t</w>"))  # "cat" is one token


def clip_vocabulary() -> list[str]:
    """CLIP's vocabulary as its `simple_tokenizer` builds it, with MERGES for CLIP's 48,894
    merges: the 256 byte symbols, the same with `</w>`, one token per merge, BOS and EOS last.
    The first 512 ids are CLIP's own (`*</w>` 265, `a</w>` 320, the ids LSAST's code uses)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    merged = ["".join(merge) for merge in MERGES]
    ends = [SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]]
    return [*symbols, *(f"{s}</w>" for s in symbols), *merged, *ends]


def write_tokenizer(folder: Path) -> None:
    """SD 1.5's tokenizer files (vocab.json, merges.txt, the two JSON configs) for a byte-level
    BPE with CLIP's vocabulary layout and two merges: every prompt tokenizes, a word that is
    not "cat" into its letters."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(clip_vocabulary())}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = "".join(f"{a} {b}\n" for a, b in MERGES)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges)
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS))
    config = {
        **SPECIAL_TOKENS,
        "do_lower_case": True,
        "model_max_length": PROMPT_LENGTH,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def _text_encoder(tokenizer: CLIPTokenizer, width: int, seed: int) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=PROMPT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def write_sd_folder(folder: Path, seed: int = 0) -> Path:
    """Save a random-weight SD-1.x pipeline (the `tiny` UNet and VAE) to `folder`."""
    configs = {
        part: json.loads((CONFIG_DIR / "tiny" / f"{part}.json").read_text())
        for part in ("unet", "vae")
    }
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(configs["unet"])
    vae = AutoencoderKL.from_config(configs["vae"])
    write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    text_encoder = _text_encoder(tokenizer, unet.config.cross_attention_dim, seed)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    # The files SD 1.5 ships, not the ones this transformers version would write instead
    shutil.rmtree(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer")
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER))
    return folder


def hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """Lay `folder` out as `repo_id` at `commit` (its `main`) in a Hugging Face cache under
    `cache` (what `HF_HOME` names): `hub/models--ORG--NAME/{refs/main,snapshots/COMMIT/}`.
    Files are copied, not linked to blobs as the Hub client does; readers do not mind."""
    repo = cache / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    return repo / "snapshots" / commit
