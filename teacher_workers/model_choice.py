"""Which model and numerics the teacher flags name, checked without loading torch or diffusers:
the command line of every teacher job is built and validated from these alone, so that
`--help` and a bad flag answer at once (`teacher_workers.models` loads what they name)."""

from __future__ import annotations

import json
from pathlib import Path

from common.errors import UserError
from teacher_workers.model_source import (
    SINGLE_FILE_SUFFIX,
    config_source,
    is_single_file,
)

CONFIG_DIR = Path(__file__).parent / "configs"
PRESETS = {"tiny": "tiny", "sd15-random": "sd15"}
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")  # `models.DTYPES` maps them


def check_dtype(name: str) -> None:
    """A dtype flag's value; an unknown name is a `UserError`."""
    if name not in DTYPE_NAMES:
        raise UserError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_NAMES)}")


def check_model_name(model: str) -> None:
    """Reject a model argument that can be neither a preset, a local directory, a single-file
    checkpoint nor a Hub id."""
    if model in PRESETS or Path(model).is_dir() or is_single_file(model):
        return
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path or model.count("/") != 1 or Path(model).is_file():
        raise UserError(
            f"unknown model {model!r}: use {' or '.join(PRESETS)}, a local diffusers directory, "
            f"a single-file checkpoint (*{SINGLE_FILE_SUFFIX}), "
            "or a Hugging Face id such as stable-diffusion-v1-5/stable-diffusion-v1-5"
        )


def text_width(model: str, revision: str | None = None, config: str | None = None) -> int | None:
    """The width of a model's text encoder, from its config alone (no weights are read), so
    that a learned prompt made for another width is refused before any work; None where no
    config can be read here (a Hub id not in the local cache: its actors will say)."""
    if model in PRESETS:
        path = CONFIG_DIR / PRESETS[model] / "text_encoder.json"
    elif (folder := Path(config_source(model, config)).expanduser()).is_dir():
        path = folder / "text_encoder" / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(
                hf_hub_download(
                    config_source(model, config),
                    "text_encoder/config.json",
                    revision=revision,
                    local_files_only=True,
                )
            )
        except Exception:  # not cached here: nothing to check against
            return None
    try:
        return int(json.loads(path.read_text())["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
