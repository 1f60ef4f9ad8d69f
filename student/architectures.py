"""The student architectures by name, so a checkpoint, a training run and every command that
loads a student pick the right class from the config alone. Only configs here: the networks'
modules (torch) load where a student is built, so `--help` and config checks need no torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from student.microast_config import MicroASTConfig
from student.model_config import STTRConfig

if TYPE_CHECKING:
    from torch import nn

ARCHS = ("sttr", "microast")
Arch = Literal["sttr", "microast"]
StudentConfig = STTRConfig | MicroASTConfig
CONFIGS: dict[str, type[StudentConfig]] = {"sttr": STTRConfig, "microast": MicroASTConfig}
TITLES = {"sttr": "STTR", "microast": "MicroAST"}  # the architectures as a picture names them
DEFAULT_ARCH = "sttr"  # what a checkpoint written before architectures were recorded holds


def arch_of(config: StudentConfig) -> str:
    """The architecture name a config belongs to."""
    return next(name for name, cls in CONFIGS.items() if type(config) is cls)


def build_student(
    config: StudentConfig,
    init: str,
    backbone_weights: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A student of the config's architecture; `init` as `build_sttr` or `build_microast`
    take it (`backbone_weights` is STTR's)."""
    from student.microast import build_microast
    from student.model import build_sttr

    if isinstance(config, MicroASTConfig):
        return build_microast(config, init, options)
    return build_sttr(config, init, backbone_weights, options)
