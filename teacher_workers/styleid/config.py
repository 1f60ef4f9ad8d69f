"""The StyleID configuration: every knob that changes a target, validated where it enters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

import tyro

from common.errors import UserError
from common.ids import config_hash
from teacher_workers.limits import check_resolution, check_steps

# LDM output_blocks 6..11 = diffusers up_blocks 2 and 3 (32x32 and 64x64 latents at 512 px).
DEFAULT_LAYERS = tuple(
    f"up_blocks.{block}.attentions.{index}.transformer_blocks.0.attn1"
    for block in (2, 3)
    for index in range(3)
)
ENCODINGS = ("mean", "sample")
# Bumped whenever a target changes for the same config (the engine, or how inputs are read), so
# old targets are not reused. 2: torchvision's centre crop and exact decoding of every pixel mode.
ENGINE_VERSION = 2


@dataclass(frozen=True)
class StyleIDConfig:
    """StyleID hyper-parameters (defaults = the paper's) and how the engine batches work."""

    steps: int = 50
    """DDIM steps"""
    gamma: float = 0.75
    """query preservation"""
    temperature: Annotated[float, tyro.conf.arg(name="T")] = 1.5
    """attention temperature"""
    layers: tuple[str, ...] = DEFAULT_LAYERS
    """injected self-attention layers (diffusers module names)"""
    adain: bool = True
    """initial AdaIN of the content latent (--no-adain: the ablation)"""
    inject: Annotated[bool, tyro.conf.arg(name="injection")] = True
    """K/V injection (--no-injection: the ablation)"""
    resolution: int = 512
    """square teacher resolution"""
    encode: str = "mean"
    """mean | sample: the VAE posterior mean, or a seeded sample"""
    # --seed and --batch-size are `TeacherOptions`'s, whose defaults depend on the teacher
    seed: tyro.conf.Suppress[int] = 0  # seeds a sampled encoding and the random-weight teachers
    batch_size: tyro.conf.Suppress[int] = 8  # images or pairs per UNet call

    def __post_init__(self) -> None:
        check_steps(self.steps)
        if not 0.0 <= self.gamma <= 1.0:
            raise UserError(f"gamma must be in [0, 1], got {self.gamma!r}")
        if not self.temperature > 0:
            raise UserError(f"temperature T must be > 0, got {self.temperature!r}")
        check_resolution(self.resolution)
        if self.encode not in ENCODINGS:
            raise UserError(f"encode must be one of {ENCODINGS}, got {self.encode!r}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size!r}")
        if not self.layers:
            raise UserError("at least one injected layer is required")
        object.__setattr__(self, "layers", tuple(self.layers))

    def output_fields(self) -> dict:
        """Everything here that changes a target (batch size does not)."""
        fields = asdict(self)
        fields.pop("batch_size")
        fields["layers"] = list(self.layers)
        return fields


def teacher_hash(config: StyleIDConfig, model: str, revision: str | None, dtype: str) -> str:
    """Hash of all that determines a target: model id/revision, dtype and the StyleID config."""
    return config_hash(
        {
            "engine": ENGINE_VERSION,
            "model": model,
            "revision": revision,
            "dtype": dtype,
            **config.output_fields(),
        }
    )
