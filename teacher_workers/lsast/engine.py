"""The LSAST engine: canny-controlled img2img with learned step- and layer-aware style prompts.

As the authors' `test.py` and `DDIMSampler.decode` (LSAST.md section 3): the content's VAE
posterior sample is noised to t = 701 (`ddim_alphas[35]`), then denoised over 681, 661, ..., 1
(the code's off-by-one: one DDIM step below the noise level). At each step t, with stage
prompts (a, b, c) = stage_prompts(t), the ControlNet runs once on the conditional contexts
(C_a, C_b) and its residuals, at scale 1.0, are added to *both* halves of the guided UNet pass
on (cat(U, C_a), cat(U, C_b), cat(U, C_c)); eps = eps_u + 10 (eps_c - eps_u); DDIM with eta 0.

Pairs are batched freely: every cross-attention context is per sample, so one UNet call can
hold pairs of different learned styles. Arithmetic of the DDIM update runs in float32 (float64
with a float64 model, for exactness tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from diffusers import ControlNetModel, DDIMScheduler

from teacher_workers.ddim import ddim_move, image_noise
from teacher_workers.lsast.attention import ContextStore, contexts, grouped
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.control import canny_hint
from teacher_workers.lsast.generator import PromptGenerator
from teacher_workers.lsast.prompts import PromptEncoder, stage_prompts
from teacher_workers.models import TeacherModel

Progress = Callable[[int], None]  # called with the number of guided UNet passes just finished

# The authors' DDIM grid: arange(0, 1000, 1000 // steps) + 1, whatever the model ships.
SCHEDULE = {
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def lsast_scheduler(scheduler_config: dict, steps: int) -> DDIMScheduler:
    """The model's noise schedule on the authors' DDIM grid (981, 961, ..., 1 for 50 steps)."""
    scheduler = DDIMScheduler.from_config(scheduler_config, **SCHEDULE)
    scheduler.set_timesteps(steps)
    return scheduler


class LSASTEngine:
    """LSAST on a frozen SD-1.x UNet, VAE, text encoder and ControlNet."""

    def __init__(
        self, teacher: TeacherModel, controlnet: ControlNetModel, config: LSASTConfig
    ) -> None:
        if teacher.text_encoder is None or teacher.prompt_tokens is None:
            raise ValueError(
                "LSAST needs the teacher's text encoder (load_teacher(text_encoder=True))"
            )
        self.teacher = teacher
        self.controlnet = controlnet
        self.config = config
        self.encoder = PromptEncoder(teacher.text_encoder, teacher.prompt_tokens)
        self.store = ContextStore()
        scheduler = lsast_scheduler(teacher.scheduler_config, config.steps)
        grid = [int(t) for t in scheduler.timesteps]  # descending
        first = config.steps - config.denoising_steps
        self.timesteps = grid[first:]  # 681, ..., 1 for the defaults
        self.noise_timestep = grid[first - 1]  # 701
        self.alphas = [float(a) for a in teacher.alphas_cumprod]
        self.final_alpha = float(scheduler.final_alpha_cumprod)
        self.work_dtype = torch.float64 if teacher.dtype == torch.float64 else torch.float32
        self._uncond: torch.Tensor | None = None

    # ---- prompts ------------------------------------------------------------------------
    @torch.inference_mode()
    def style_contexts(self, generator: PromptGenerator) -> torch.Tensor:
        """[n_prompts, L, D]: the contexts C_i of one learned style.

        The generator runs in eval mode unless `prompt_dropout` (the authors' pickled module
        may have kept train mode; then dropout is seeded by the config's seed)."""
        if isinstance(generator, torch.nn.Module):
            generator.train(self.config.prompt_dropout)
            torch.manual_seed(self.config.seed)
        prompts = generator().to(self.teacher.device)
        return self.encoder.encode(prompts).to(self.teacher.dtype)

    @torch.inference_mode()
    def uncond_context(self) -> torch.Tensor:
        """[1, L, D]: CLIP("") for the unconditional half of classifier-free guidance."""
        if self._uncond is None:
            self._uncond = self.encoder.encode_empty().to(self.teacher.dtype)
        return self._uncond

    # ---- latent core --------------------------------------------------------------------
    @contextmanager
    def attached(self) -> Iterator[None]:
        """The UNet and ControlNet run this engine's grouped processors for the duration."""
        with ExitStack() as stack:
            stack.enter_context(grouped(self.teacher.unet, self.store))
            stack.enter_context(grouped(self.controlnet, self.store))
            yield

    def denoise_step(
        self, x: torch.Tensor, t: int, hint: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """Guided eps at t for latents x [B, 4, h, w], hints [B, 3, H, W] and each sample's
        style contexts cond [B, n_prompts, L, D]."""
        unet, dtype = self.teacher.unet, self.teacher.dtype
        picked = [cond[:, k] for k in stage_prompts(t, self.config.stage_indexing)]
        x_in = x.to(dtype)
        with self.attached(), contexts(self.store, (picked[0], picked[1], picked[2])):
            down, mid = self.controlnet(
                x_in,
                t,
                encoder_hidden_states=picked[0],
                controlnet_cond=hint.to(dtype),
                conditioning_scale=self.config.control_scale,
                return_dict=False,
            )
        uncond = self.uncond_context().expand(len(x), -1, -1)
        both = [torch.cat([uncond, c]) for c in picked]
        with self.attached(), contexts(self.store, (both[0], both[1], both[2])):
            eps = unet(
                torch.cat([x_in, x_in]),
                t,
                encoder_hidden_states=both[0],
                down_block_additional_residuals=[torch.cat([r, r]) for r in down],
                mid_block_additional_residual=torch.cat([mid, mid]),
            ).sample.to(self.work_dtype)
        eps_u, eps_c = eps.chunk(2)
        return eps_u + self.config.guidance * (eps_c - eps_u)

    @torch.inference_mode()
    def sample(
        self,
        z0: torch.Tensor,
        noise: torch.Tensor,
        hint: torch.Tensor,
        cond: torch.Tensor,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Clean latents z0 [B, 4, h, w] noised with `noise` to `noise_timestep`, denoised."""
        a = self.alphas[self.noise_timestep]
        x = math.sqrt(a) * z0.to(self.work_dtype) + math.sqrt(1 - a) * noise.to(self.work_dtype)
        for i, t in enumerate(self.timesteps):
            last = i + 1 == len(self.timesteps)
            alpha_prev = self.final_alpha if last else self.alphas[self.timesteps[i + 1]]
            x = ddim_move(x, self.denoise_step(x, t, hint, cond), self.alphas[t], alpha_prev)
            if progress is not None:
                progress(1)
        return x

    # ---- image space --------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> VAE posterior samples x 0.18215 (as the code's
        `.sample()`), the sample's noise seeded by the seed and each image's pixels."""
        vae = self.teacher.vae
        dist = vae.encode(images.to(self.teacher.device, vae.dtype) * 2.0 - 1.0).latent_dist
        noise = torch.stack(
            [image_noise(im, dist.mean.shape[1:], self.config.seed, "posterior") for im in images]
        )
        z = dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)
        return z.to(self.work_dtype) * vae.config.scaling_factor

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1] (float32)."""
        vae = self.teacher.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
        return ((image.float() + 1) / 2).clamp(0, 1)

    def stylize_pairs(
        self,
        contents: torch.Tensor,
        styles: Sequence[PromptGenerator],
        pairs: Sequence[tuple[int, int]],
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Chosen (content index, style index) pairs of contents [Nc, 3, H, W] in [0, 1] and
        learned styles -> [P, 3, H, W] in [0, 1], in the order given. Each content is encoded
        and edge-detected once, each style's prompts encoded once."""
        cfg = self.config
        device = self.teacher.device
        conds = torch.stack([self.style_contexts(style) for style in styles])
        step = cfg.batch_size
        z0 = torch.cat([self.encode(contents[i : i + step]) for i in range(0, len(contents), step)])
        hints = canny_hint(contents, *cfg.canny).to(device)
        noise = torch.stack(
            [image_noise(im, z0.shape[1:], cfg.seed, "forward") for im in contents]
        ).to(device)
        out = []
        for start in range(0, len(pairs), step):
            part = pairs[start : start + step]
            ci = torch.tensor([c for c, _ in part], device=device)
            si = torch.tensor([s for _, s in part], device=device)
            latents = self.sample(z0[ci], noise[ci], hints[ci], conds[si], progress)
            out.append(self.decode(latents))
        return torch.cat(out)

    def pair_passes(self, n_contents: int, n_styles: int, n_pairs: int) -> int:
        """Guided passes of `stylize_pairs` (the `Engine` interface's progress total): each
        content is encoded and each style's prompts once, outside the UNet."""
        return self.unet_passes(n_pairs)

    def unet_passes(self, n_pairs: int) -> int:
        """Guided denoising steps for `n_pairs` pairs, for progress totals."""
        return math.ceil(n_pairs / self.config.batch_size) * len(self.timesteps)
