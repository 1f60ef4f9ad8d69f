"""Load the STTR authors' released checkpoint (`checkpoint0005.pth`) into our module names.

Their file is a DETR-style training checkpoint: a dict whose "model" entry is the state dict
of their `ISTT_NOFOLD` module (plus optimizer, scheduler, epoch and the argparse namespace).
Our modules hold the same tensors under clearer names; `OURS_TO_AUTHORS` spells out every
rename, and names it does not mention are the same on both sides.
"""

from __future__ import annotations

import argparse
import io
import logging
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from common.errors import UserError, first_line
from common.storage import read_url

logger = logging.getLogger(__name__)

# (pattern on our name, replacement giving theirs); the first matching rule applies.
OURS_TO_AUTHORS: tuple[tuple[str, str], ...] = (
    (r"^content_encoder\.", "backbone_content.body."),
    (r"^style_encoder\.", "backbone_style.body."),
    (r"^content_proj\.", "input_proj_c."),
    (r"^style_proj\.", "input_proj_s."),
    (r"^transformer\.encoder_layers\.", "transformer.encoder.layers."),
    (
        r"^transformer\.decoder_layers\.(\d+)\.cross_attn\.",
        r"transformer.decoder.layers.\1.multihead_attn.",
    ),
    (r"^transformer\.decoder_layers\.", "transformer.decoder.layers."),
    (r"^transformer\.decoder_norm\.", "transformer.decoder.norm."),
    # Their tail is one flat Sequential of [ResBlock, Upsample, ReflectionPad2d, Conv2d] x 3.
    (r"^tail\.0\.res\.", "tail.0."),
    (r"^tail\.0\.conv\.", "tail.3."),
    (r"^tail\.1\.res\.", "tail.4."),
    (r"^tail\.1\.conv\.", "tail.7."),
    (r"^tail\.2\.res\.", "tail.8."),
    (r"^tail\.2\.conv\.", "tail.11."),
)


def authors_name(ours: str) -> str:
    """The authors' name for one of our state-dict keys."""
    for pattern, replacement in OURS_TO_AUTHORS:
        if re.match(pattern, ours):
            return re.sub(pattern, replacement, ours, count=1)
    return ours


def authors_key_map(model: nn.Module) -> dict[str, str]:
    """Authors' key -> our key, for every entry of `model.state_dict()`."""
    return {authors_name(key): key for key in model.state_dict()}


def load_authors_checkpoint(model: nn.Module, url: str, options: Mapping[str, Any] | None) -> None:
    """Load the authors' weights into `model`; a missing, unreadable or mismatched file is a
    `UserError`, keys the model does not have are ignored with one warning."""
    theirs = read_authors_state(url, options)
    key_map = authors_key_map(model)
    own = model.state_dict()
    renamed = {key_map[key]: value for key, value in theirs.items() if key in key_map}
    missing = sorted(set(own) - set(renamed))
    if missing:
        raise UserError(
            f"{url} lacks {len(missing)} of the student's weights "
            f"(e.g. {authors_name(missing[0])}); expected the STTR authors' checkpoint0005.pth "
            "and a config with their layer counts"
        )
    for key in sorted(renamed):
        if renamed[key].shape != own[key].shape:
            raise UserError(
                f"{url}: {authors_name(key)} has shape {list(renamed[key].shape)}, "
                f"the student expects {list(own[key].shape)}"
            )
    unexpected = sorted(key for key in theirs if key not in key_map)
    if unexpected:
        logger.warning(
            "%s: ignoring %d entries the student does not have (e.g. %s)",
            url,
            len(unexpected),
            unexpected[0],
        )
    model.load_state_dict(renamed)


def read_authors_state(url: str, options: Mapping[str, Any] | None) -> dict[str, Tensor]:
    """The "model" state dict of an authors' checkpoint at a path or URL (read with the run's
    storage `options`), loaded with `weights_only=True`."""
    data = read_url(url, options)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = first_line(exc)
        raise UserError(f"cannot read {url} as a PyTorch checkpoint: {reason}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise UserError(f"{url} has no 'model' state dict; expected the STTR authors' checkpoint")
    return checkpoint["model"]
