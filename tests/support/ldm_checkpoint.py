"""A diffusers SD-1.x folder written back as one checkpoint in the original CompVis LDM layout.

Single-file SD 1.x checkpoints (`v1-5-pruned-emaonly.safetensors` and the fine-tunes shared as
one file) keep the key names of the original training code: the UNet under
`model.diffusion_model.` (openaimodel.py: `input_blocks`, `middle_block`, `output_blocks`,
ResBlocks with `in_layers`/`emb_layers`/`out_layers`), the VAE under `first_stage_model.`
(`encoder.down.I.block.J`, `decoder.up.I` numbered from the lowest resolution, `mid.attn_1`
with 1x1-conv `q`/`k`/`v`/`proj_out`) and the CLIP text encoder under
`cond_stage_model.transformer.text_model.`. This maps the diffusers names onto that layout,
written here from the original model code, so tests can check diffusers' loader against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
Blocks = dict[str, tuple[str, dict[str, str]]]  # diffusers prefix -> (LDM prefix, inner names)


def unet_blocks(config: dict) -> Blocks:
    """openaimodel.UNetModel: per resolution `layers_per_block` input blocks (ResBlock, then
    the SpatialTransformer) and a downsampling block, mirrored by one more output block per
    resolution whose last holds the upsampler after its ResBlock (and transformer, if any)."""
    per_level = config["layers_per_block"] + 1
    blocks: Blocks = {
        "conv_in": ("input_blocks.0.0", {}),
        "time_embedding.linear_1": ("time_embed.0", {}),
        "time_embedding.linear_2": ("time_embed.2", {}),
        "mid_block.resnets.0": ("middle_block.0", UNET_RESNET),
        "mid_block.attentions.0": ("middle_block.1", {}),
        "mid_block.resnets.1": ("middle_block.2", UNET_RESNET),
        "conv_norm_out": ("out.0", {}),
        "conv_out": ("out.2", {}),
    }
    for level, up_type in enumerate(config["up_block_types"]):
        for layer in range(per_level - 1):
            index = 1 + level * per_level + layer
            blocks[f"down_blocks.{level}.resnets.{layer}"] = (
                f"input_blocks.{index}.0",
                UNET_RESNET,
            )
            blocks[f"down_blocks.{level}.attentions.{layer}"] = (f"input_blocks.{index}.1", {})
        blocks[f"down_blocks.{level}.downsamplers.0.conv"] = (
            f"input_blocks.{(level + 1) * per_level}.0.op",
            {},
        )
        for layer in range(per_level):
            index = level * per_level + layer
            blocks[f"up_blocks.{level}.resnets.{layer}"] = (f"output_blocks.{index}.0", UNET_RESNET)
            blocks[f"up_blocks.{level}.attentions.{layer}"] = (f"output_blocks.{index}.1", {})
        upsampler = 2 if up_type.startswith("CrossAttn") else 1
        blocks[f"up_blocks.{level}.upsamplers.0.conv"] = (
            f"output_blocks.{level * per_level + per_level - 1}.{upsampler}.conv",
            {},
        )
    return blocks


def vae_blocks(config: dict) -> Blocks:
    """ldm.modules.diffusionmodules.model Encoder/Decoder: `down.I`/`up.I` lists of `block.J`
    with `downsample`/`upsample`; the decoder's `up` list runs from the lowest resolution, so
    diffusers' first up block (the lowest) is the last in it."""
    levels = len(config["block_out_channels"])
    blocks: Blocks = {"quant_conv": ("quant_conv", {}), "post_quant_conv": ("post_quant_conv", {})}
    for coder in ("encoder", "decoder"):
        blocks |= {
            f"{coder}.conv_in": (f"{coder}.conv_in", {}),
            f"{coder}.conv_out": (f"{coder}.conv_out", {}),
            f"{coder}.conv_norm_out": (f"{coder}.norm_out", {}),
            f"{coder}.mid_block.resnets.0": (f"{coder}.mid.block_1", VAE_RESNET),
            f"{coder}.mid_block.resnets.1": (f"{coder}.mid.block_2", VAE_RESNET),
            f"{coder}.mid_block.attentions.0": (f"{coder}.mid.attn_1", VAE_ATTENTION),
        }
    for level in range(levels):
        blocks[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = (
            f"encoder.down.{level}.downsample.conv",
            {},
        )
        blocks[f"decoder.up_blocks.{level}.upsamplers.0.conv"] = (
            f"decoder.up.{levels - 1 - level}.upsample.conv",
            {},
        )
        for layer in range(config["layers_per_block"] + 1):
            blocks[f"encoder.down_blocks.{level}.resnets.{layer}"] = (
                f"encoder.down.{level}.block.{layer}",
                VAE_RESNET,
            )
            blocks[f"decoder.up_blocks.{level}.resnets.{layer}"] = (
                f"decoder.up.{levels - 1 - level}.block.{layer}",
                VAE_RESNET,
            )
    return blocks


def rename(state: dict[str, torch.Tensor], blocks: Blocks, prefix: str) -> dict[str, torch.Tensor]:
    """Every diffusers key under its LDM name (a key no block claims fails the test helper,
    so nothing is dropped silently)."""
    out = {}
    for key, tensor in state.items():
        block = max((b for b in blocks if key.startswith(b + ".")), key=len, default=None)
        assert block is not None, f"no LDM name for {key}"
        ldm, inner = blocks[block]
        rest = key[len(block) + 1 :]
        name = max((n for n in inner if rest.startswith(n + ".")), key=len, default=None)
        if name is not None:
            rest = inner[name] + rest[len(name) :]
        out[f"{prefix}{ldm}.{rest}"] = tensor
    return out


def vae_attention_as_convolutions(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE's mid-block attention projections are 1x1 convolutions in the LDM code."""
    projections = (".q.weight", ".k.weight", ".v.weight", ".proj_out.weight")
    return {
        k: v[:, :, None, None] if ".mid.attn_1" in k and k.endswith(projections) else v
        for k, v in state.items()
    }


def ldm_buffers(scheduler: dict, prompt_length: int) -> dict[str, torch.Tensor]:
    """Non-weight tensors SD-1.x files carry beside the three parts, which a loader must skip:
    LatentDiffusion's noise schedule (`register_schedule`: `betas`, `alphas_cumprod`, ...) and
    the CLIP text model's `position_ids`."""
    steps = scheduler["num_train_timesteps"]
    betas = torch.linspace(scheduler["beta_start"] ** 0.5, scheduler["beta_end"] ** 0.5, steps) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": torch.cat([torch.ones(1), alphas_cumprod[:-1]]),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(
            prompt_length
        )[None],
    }


def write_ldm_checkpoint(folder: Path, path: Path) -> Path:
    """Write the UNet, VAE and text encoder of the diffusers folder `folder` as one
    LDM-layout `.safetensors` file at `path`, with the buffers such files carry."""

    def part(name: str, weights: str) -> tuple[dict, dict[str, torch.Tensor]]:
        config = json.loads((folder / name / "config.json").read_text())
        return config, load_file(folder / name / weights)

    unet_config, unet = part("unet", "diffusion_pytorch_model.safetensors")
    vae_config, vae = part("vae", "diffusion_pytorch_model.safetensors")
    text_config, text = part("text_encoder", "model.safetensors")
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    checkpoint = {
        **ldm_buffers(scheduler, text_config["max_position_embeddings"]),
        **rename(unet, unet_blocks(unet_config), "model.diffusion_model."),
        **vae_attention_as_convolutions(rename(vae, vae_blocks(vae_config), "first_stage_model.")),
        **{
            f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v
            for k, v in text.items()
        },
    }
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, str(path))
    return path
