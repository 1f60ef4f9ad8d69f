"""Learning a style (LSAST.md section 2): the noise-prediction step that trains the prompt
generator on one artist's images, with the UNet, VAE and text encoder frozen.

One step, as the authors' `LatentDiffusion.p_losses` with batch 1: an image (bicubic resize to
a square, ignoring the aspect ratio; random horizontal flip), z0 = VAE posterior sample x
0.18215, t ~ U{0..999}, z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps, the stage prompts (a, b, c) of
t as the (down, mid, up) contexts, loss = mean((eps_hat - eps)^2). In the code the UNet's
encoder and middle blocks run under no_grad, so only the decoder prompt trains: with a frozen
UNet, detaching C_a and C_b gives the same gradients (`grad_through_down_mid` lifts this).

Each step's randomness (image, flip, t, noise, VAE sample, dropout) is drawn from a seed fixed
by (seed, step, rank), so a resumed run takes the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from common.images import decode_image, to_tensor
from teacher_workers.lsast.attention import ContextStore, contexts, grouped
from teacher_workers.lsast.prompts import N_TIMESTEPS, PromptEncoder, StageIndexing, stage_prompts
from teacher_workers.models import TeacherModel


def style_image(data: bytes, name: str, resolution: int) -> torch.Tensor:
    """Bytes -> [3, R, R] in [0, 1]: RGB, resized with bicubic to a square, as the authors'
    `PersonalizedBase` (no crop: the aspect ratio is not kept). Bad input is an `ImageError`."""
    image = decode_image(data, name).resize((resolution, resolution), Image.Resampling.BICUBIC)
    return to_tensor(image)


def step_seed(*parts: int) -> int:
    """A seed fixed by (seed, step, rank)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


@dataclass(frozen=True)
class Draw:
    """The random choices of one training step."""

    image: int
    flip: bool
    t: int
    seed: int


def draw(n_images: int, seed: int) -> Draw:
    """Image index, flip and timestep for one step, from its seed."""
    rng = torch.Generator().manual_seed(seed)
    image = int(torch.randint(n_images, (1,), generator=rng))
    flip = bool(torch.rand(1, generator=rng) < 0.5)
    t = int(torch.randint(N_TIMESTEPS, (1,), generator=rng))
    return Draw(image, flip, t, seed)


class StyleLoss:
    """The LSAST training loss of a prompt generator on a frozen teacher."""

    def __init__(
        self,
        teacher: TeacherModel,
        stage_indexing: StageIndexing,
        grad_through_down_mid: bool = False,
    ) -> None:
        if teacher.text_encoder is None or teacher.prompt_tokens is None:
            raise ValueError("learning a style needs the teacher's text encoder")
        self.teacher = teacher
        self.encoder = PromptEncoder(teacher.text_encoder, teacher.prompt_tokens)
        self.stage_indexing = stage_indexing
        self.grad_through_down_mid = grad_through_down_mid
        self.store = ContextStore()

    def latent(self, image: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """[3, R, R] in [0, 1] -> [1, 4, R/8, R/8]: the VAE posterior sample x scaling."""
        vae = self.teacher.vae
        with torch.no_grad():
            x = image[None].to(self.teacher.device, vae.dtype) * 2.0 - 1.0
            dist = vae.encode(x).latent_dist
            noise = torch.randn(dist.mean.shape, generator=rng, dtype=dist.mean.dtype)
            z = dist.mean + dist.std * noise.to(dist.mean.device)
        return z * vae.config.scaling_factor

    def __call__(self, generator: nn.Module, images: torch.Tensor, step: Draw) -> torch.Tensor:
        """The loss of one step on `images` [N, 3, R, R] (its draw picks one, flip and t)."""
        rng = torch.Generator().manual_seed(step.seed + 1)
        image = images[step.image].flip(-1) if step.flip else images[step.image]
        z0 = self.latent(image, rng)
        eps = torch.randn(z0.shape, generator=rng, dtype=z0.dtype).to(z0.device)
        alpha = float(self.teacher.alphas_cumprod[step.t])
        z_t = math.sqrt(alpha) * z0 + math.sqrt(1 - alpha) * eps
        torch.manual_seed(step.seed)  # the generator's dropout
        picked = list(stage_prompts(step.t, self.stage_indexing))
        # each C_i depends on P*_i alone: encoding the three used prompts is encoding all 30
        ctx = self.encoder.encode(generator()[picked]).to(self.teacher.dtype)
        down, mid, up = ctx[0:1], ctx[1:2], ctx[2:3]
        if not self.grad_through_down_mid:
            down, mid = down.detach(), mid.detach()
        unet = self.teacher.unet
        t = torch.tensor([step.t], device=z_t.device)
        with grouped(unet, self.store), contexts(self.store, (down, mid, up)):
            eps_hat = unet(z_t, t, encoder_hidden_states=down).sample
        return F.mse_loss(eps_hat.float(), eps.float())


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's per-parameter state as flat named tensors, for a safetensors checkpoint (its
    hyper-parameters come from the command line again)."""
    return {
        f"{index}.{name}": value.detach().cpu().reshape(-1) if value.ndim == 0 else value.cpu()
        for index, state in optimizer.state_dict()["state"].items()
        for name, value in state.items()
    }


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    """Restore what `optimizer_tensors` saved into an optimizer over the same parameters."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
