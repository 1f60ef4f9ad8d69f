"""The StyleID engine: DDIM inversion with feature capture, AdaIN, and injected DDIM sampling.

The core works on latents (`invert`, `sample`); `stylize_tile` wraps it for a tile of images:
each distinct content and style is encoded and inverted once, its features are kept (on the
GPU, or in pinned CPU memory when they do not fit), and all Nc x Ns pairs are sampled in
batches. `stylize_naive` is the reference's way (every pair re-inverts both images, batch 1),
kept as the baseline that benchmarks compare against.

DDIM arithmetic runs in float32 (float64 when the UNet is float64, for exactness tests); the
UNet and VAE run in the model dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers import DDIMScheduler
from diffusers.models.attention_processor import Attention

from teacher_workers.ddim import ddim_move, image_noise
from teacher_workers.models import TeacherModel
from teacher_workers.styleid.attention import (
    AttentionController,
    Features,
    Injection,
    Mode,
    StyleIDAttnProcessor,
    check_plain_self_attention,
)
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.teacher import Progress

CONTENT_KINDS = ("q",)
STYLE_KINDS = ("k", "v")


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Initial-latent AdaIN: content latents [B, C, H, W] with each style's per-channel statistics.

    As the reference: statistics over (H, W) per sample and channel, unbiased std, no epsilon.
    """
    c_mean, c_std = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True)
    s_mean, s_std = style.mean((2, 3), keepdim=True), style.std((2, 3), keepdim=True)
    return (content - c_mean) / c_std * s_std + s_mean


def feature_bytes(
    unet: torch.nn.Module, config: StyleIDConfig, kinds: tuple[str, ...], height: int, width: int
) -> int:
    """Bytes of the `kinds` features one image stores for sampling (works on a meta-device UNet).

    Per injected layer and sampling step: tokens at that up block's resolution x channels.
    """
    blocks = len(unet.up_blocks)
    modules = dict(unet.named_modules())
    per_step = 0
    for layer in config.layers:
        scale = 2 ** (blocks - 1 - int(layer.split(".")[1]))
        tokens = (height // 8 // scale) * (width // 8 // scale)
        per_step += tokens * modules[layer].to_q.out_features
    element = torch.finfo(unet.dtype).bits // 8
    return per_step * len(kinds) * (config.steps - 1) * element


def _chunks(n: int, size: int) -> Iterator[slice]:
    """Slices of at most `size` covering range(n): the batches of one UNet call."""
    return (slice(start, min(start + size, n)) for start in range(0, n, size))


def _concat(parts: list[Features]) -> Features:
    """Join per-chunk features along the batch dimension."""
    if len(parts) == 1:
        return parts[0]
    return {
        t: {
            layer: {
                kind: torch.cat([p[t][layer][kind] for p in parts]) for kind in parts[0][t][layer]
            }
            for layer in parts[0][t]
        }
        for t in parts[0]
    }


class StyleIDEngine:
    """StyleID on a frozen SD-1.x UNet and VAE (see SPEC section 3 for the exact algorithm)."""

    def __init__(
        self, teacher: TeacherModel, config: StyleIDConfig, offload: bool | None = None
    ) -> None:
        self.teacher = teacher
        self.config = config
        self.offload = offload  # None: decide per tile from free GPU memory
        self.controller = AttentionController(gamma=config.gamma, temperature=config.temperature)
        self.processors = self._processors()
        scheduler = DDIMScheduler.from_config(teacher.scheduler_config)
        scheduler.set_timesteps(config.steps)
        self.alphas = [float(a) for a in teacher.alphas_cumprod]
        self.final_alpha = float(scheduler.final_alpha_cumprod)
        self.inversion_steps = sorted(int(t) for t in scheduler.timesteps)  # 1, 21, ..., 981
        self.sampling_steps = self.inversion_steps[-2::-1]  # 961, ..., 1 (the reference skips 981)
        self.work_dtype = torch.float64 if teacher.dtype == torch.float64 else torch.float32
        self._progress: Progress | None = None

    # ---- set-up -------------------------------------------------------------------------
    def _processors(self) -> dict[str, StyleIDAttnProcessor]:
        """One processor per injected layer; unknown or unsuitable layers fail here, not mid-run."""
        modules = dict(self.teacher.unet.named_modules())
        processors = {}
        for layer in self.config.layers:
            attn = modules.get(layer)
            if not isinstance(attn, Attention):
                raise ValueError(f"{layer!r} is not an attention layer of this UNet")
            check_plain_self_attention(layer, attn)
            processors[layer] = StyleIDAttnProcessor(layer, self.controller)
        return processors

    @contextmanager
    def _attached(self) -> Iterator[None]:
        """The injected layers run this engine's processors for the duration, and the UNet gets
        its own processors back afterwards, even on error (diffusers' `attn_processors` and
        `set_attn_processor`): a teacher shared by several engines, or used plainly between
        runs, is left as it was found."""
        unet = self.teacher.unet
        original = unet.attn_processors
        unet.set_attn_processor(
            {
                name: self.processors.get(name.removesuffix(".processor"), processor)
                for name, processor in original.items()
            }
        )
        try:
            yield
        finally:
            unet.set_attn_processor(original)

    # ---- latent core --------------------------------------------------------------------
    def _eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """One UNet pass on the empty-prompt conditioning (no classifier-free guidance)."""
        self.controller.timestep = t
        unet = self.teacher.unet
        prompt = self.teacher.prompt_embeds.expand(x.shape[0], -1, -1)
        timestep = torch.tensor(t, device=x.device)
        eps = unet(x.to(unet.dtype), timestep, encoder_hidden_states=prompt).sample
        if self._progress is not None:
            self._progress(1)
        return eps.to(self.work_dtype)

    @torch.inference_mode()
    def invert(
        self, latents: torch.Tensor, kinds: tuple[str, ...] = (), offload: bool | None = None
    ) -> tuple[torch.Tensor, Features]:
        """DDIM-invert clean latents [B, 4, h, w] to z_T, recording `kinds` ("q", "k", "v").

        Features are kept only for the timesteps sampling will use, keyed by timestep.
        """
        ctl = self.controller
        ctl.mode = Mode.CAPTURE if kinds else Mode.OFF
        ctl.capture_kinds, ctl.capture_steps, ctl.captured = (
            kinds,
            frozenset(self.sampling_steps),
            {},
        )
        if offload is None:
            offload = self._offloading(latents, kinds)
        ctl.store_device = torch.device("cpu") if offload else None
        x = latents.to(self.work_dtype)
        last = len(self.teacher.alphas_cumprod) - 1
        try:
            with self._attached():
                for i, t in enumerate(self.inversion_steps):
                    t_next = (
                        self.inversion_steps[i + 1] if i + 1 < len(self.inversion_steps) else last
                    )
                    x = ddim_move(x, self._eps(x, t), self.alphas[t], self.alphas[t_next])
            return x, ctl.captured
        finally:
            ctl.mode, ctl.captured = Mode.OFF, {}

    @torch.inference_mode()
    def sample(
        self,
        z_t: torch.Tensor,
        content_features: Features,
        style_features: Features,
        content_index: torch.Tensor,
        style_index: torch.Tensor,
    ) -> torch.Tensor:
        """Injected DDIM sampling of P pairs from z_t [P, 4, h, w]; pair p uses content
        `content_index[p]` and style `style_index[p]` of the given feature sets."""
        ctl = self.controller
        x = z_t.to(self.work_dtype)
        steps = self.sampling_steps
        try:
            with self._attached():
                for i, t in enumerate(steps):
                    if self.config.inject:
                        ctl.mode = Mode.INJECT
                        ctl.injection = self._gather(
                            t,
                            content_features,
                            style_features,
                            content_index,
                            style_index,
                            x.device,
                        )
                    last = i + 1 == len(steps)
                    alpha_prev = self.final_alpha if last else self.alphas[steps[i + 1]]
                    x = ddim_move(x, self._eps(x, t), self.alphas[t], alpha_prev)
            return x
        finally:
            ctl.mode, ctl.injection = Mode.OFF, None

    def _gather(
        self,
        t: int,
        content: Features,
        style: Features,
        content_index: torch.Tensor,
        style_index: torch.Tensor,
        device: torch.device,
    ) -> Injection:
        """Per-pair Q_c(t), K_s(t), V_s(t) for every injected layer, on the compute device."""
        dtype = self.teacher.dtype

        def pick(features: Features, kind: str, index: torch.Tensor) -> dict[str, torch.Tensor]:
            return {
                layer: features[t][layer][kind][index.to(features[t][layer][kind].device)].to(
                    device, dtype, non_blocking=True
                )
                for layer in self.processors
            }

        return Injection(
            queries=pick(content, "q", content_index),
            keys=pick(style, "k", style_index),
            values=pick(style, "v", style_index),
        )

    # ---- memory -------------------------------------------------------------------------
    def feature_bytes(self, kinds: tuple[str, ...], height: int, width: int) -> int:
        """Bytes of the stored `kinds` features of one image of height x width pixels."""
        return feature_bytes(self.teacher.unet, self.config, kinds, height, width)

    def _offloading(self, latents: torch.Tensor, kinds: tuple[str, ...]) -> bool:
        """Offload features to pinned CPU memory when asked, or when they would not fit the GPU."""
        if self.offload is not None or latents.device.type != "cuda" or not kinds:
            return bool(self.offload) and latents.device.type == "cuda"
        needed = self.feature_bytes(kinds, latents.shape[2] * 8, latents.shape[3] * 8) * len(
            latents
        )
        free, _ = torch.cuda.mem_get_info(latents.device)
        return needed > 0.5 * free

    # ---- image space --------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> scaled VAE latents [B, 4, H/8, W/8] (posterior mean,
        or a sample whose noise depends only on the seed, so it is batch-invariant)."""
        vae = self.teacher.vae
        latents = []
        for part in _chunks(len(images), self.config.batch_size):
            x = images[part].to(self.teacher.device, vae.dtype) * 2.0 - 1.0
            dist = vae.encode(x).latent_dist
            z = dist.mean
            if self.config.encode == "sample":
                noise = [
                    image_noise(image, z.shape[1:], self.config.seed) for image in images[part]
                ]
                z = z + dist.std * torch.stack(noise).to(z.device, z.dtype)
            latents.append(z.to(self.work_dtype) * vae.config.scaling_factor)
        return torch.cat(latents)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, 4, h, w] -> images [B, 3, 8h, 8w] in [0, 1] (float32)."""
        vae = self.teacher.vae
        images = []
        for part in _chunks(len(latents), self.config.batch_size):
            z = latents[part].to(vae.dtype) / vae.config.scaling_factor
            images.append((vae.decode(z).sample.float().clamp(-1, 1) + 1) / 2)
        return torch.cat(images)

    def _invert_all(
        self, latents: torch.Tensor, kinds: tuple[str, ...]
    ) -> tuple[torch.Tensor, Features]:
        """Invert in batches of `batch_size`, joining the captured features."""
        if not self.config.inject:
            kinds = ()
        offload = self._offloading(latents, kinds)  # once for all chunks: they are joined below
        parts = [
            self.invert(latents[part], kinds, offload)
            for part in _chunks(len(latents), self.config.batch_size)
        ]
        return torch.cat([z for z, _ in parts]), _concat([f for _, f in parts])

    def unet_passes(self, n_contents: int, n_styles: int, n_pairs: int | None = None) -> int:
        """UNet passes for a tile (all pairs, or `n_pairs` of them), for progress totals."""
        batches = lambda n: math.ceil(n / self.config.batch_size)  # noqa: E731
        inversion = (batches(n_contents) + batches(n_styles)) * len(self.inversion_steps)
        pairs = n_contents * n_styles if n_pairs is None else n_pairs
        return inversion + batches(pairs) * len(self.sampling_steps)

    def pair_passes(self, n_contents: int, n_styles: int, n_pairs: int) -> int:
        """UNet passes of `stylize_pairs` (the `Engine` interface's progress total)."""
        return self.unet_passes(n_contents, n_styles, n_pairs)

    def stylize_pairs(
        self,
        contents: torch.Tensor,
        styles: torch.Tensor | Sequence[torch.Tensor],
        pairs: Sequence[tuple[int, int]],
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Chosen (content index, style index) pairs of contents [Nc, 3, H, W] and styles
        [Ns, 3, H', W'] (or Ns images [3, H', W']; values in [0, 1]) -> [P, 3, H, W] in [0, 1],
        in the order given.

        Each image is inverted once, however many pairs use it; pairs are sampled
        `batch_size` at a time.
        """
        if not isinstance(styles, torch.Tensor):
            styles = torch.stack(list(styles))
        _check_images("contents", contents)
        _check_images("styles", styles)
        self._progress = progress
        try:
            z_c, content_features = self._invert_all(self.encode(contents), CONTENT_KINDS)
            z_s, style_features = self._invert_all(self.encode(styles), STYLE_KINDS)
            content_index = torch.tensor([c for c, _ in pairs], dtype=torch.long)
            style_index = torch.tensor([s for _, s in pairs], dtype=torch.long)
            latents = []
            for part in _chunks(len(pairs), self.config.batch_size):
                ci, si = content_index[part], style_index[part]
                z = adain(z_c[ci], z_s[si]) if self.config.adain else z_c[ci]
                latents.append(self.sample(z, content_features, style_features, ci, si))
            return self.decode(torch.cat(latents))
        finally:
            self._progress = None

    def stylize_tile(
        self, contents: torch.Tensor, styles: torch.Tensor, progress: Progress | None = None
    ) -> torch.Tensor:
        """Every content [Nc, 3, H, W] with every style [Ns, 3, H', W'] -> [Ns, Nc, 3, H, W]:
        result[s, c] is content c in style s."""
        n_c, n_s = len(contents), len(styles)
        pairs = [(c, s) for s in range(n_s) for c in range(n_c)]
        images = self.stylize_pairs(contents, styles, pairs, progress)
        return images.reshape(n_s, n_c, *images.shape[1:])

    def stylize_naive(
        self, contents: torch.Tensor, styles: torch.Tensor, progress: Progress | None = None
    ) -> torch.Tensor:
        """The reference's cost model: each pair on its own, re-inverting both images, batch 1."""
        rows = [
            torch.cat(
                [
                    self.stylize_tile(contents[c : c + 1], styles[s : s + 1], progress)[0]
                    for c in range(len(contents))
                ]
            )
            for s in range(len(styles))
        ]
        return torch.stack(rows)


def _check_images(name: str, images: torch.Tensor) -> None:
    """Shapes the UNet can take: [N, 3, H, W] with H and W multiples of 64 (latents of 8)."""
    if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"{name} must be [N, 3, H, W] with N >= 1, got {tuple(images.shape)}")
    if images.shape[2] % 64 or images.shape[3] % 64:
        raise ValueError(
            f"{name} height and width must be multiples of 64, got {tuple(images.shape[2:])}"
        )
