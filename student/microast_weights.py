"""The MicroAST authors' released weights: four state dicts, one per module, shipped with the
project (`student/weights/microast/`, with their MIT licence) and fetchable from the authors'
repository for an air-gapped cache (`jobs.prepare_models`).

Our modules keep the authors' names, so the map from their files to our state dict is a prefix
per file; loading is strict: every key of every file must land on one of ours and none of ours
may be left out.
"""

from __future__ import annotations

import io
import pickle
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import UserError, first_line
from common.storage import read_url

if TYPE_CHECKING:  # torch loads where weights are read: jobs.prepare_models --help needs none
    from torch import Tensor, nn

AUTHORS = "authors"  # `--init authors`: the shipped copy
SHIPPED = Path(__file__).parent / "weights" / "microast"
# The authors' repository at the commit the shipped copy and MICROAST's modules follow.
AUTHORS_URL = (
    "https://raw.githubusercontent.com/EndyWon/MicroAST/"
    "5a6c9050d8c408191cb9db12c697f3e4c7ebe137/models"
)
FILES = {  # our module -> the authors' file holding it
    "content_encoder": "content_encoder_iter_160000.pth.tar",
    "style_encoder": "style_encoder_iter_160000.pth.tar",
    "modulator": "modulator_iter_160000.pth.tar",
    "decoder": "decoder_iter_160000.pth.tar",
}
LICENSE = "LICENSE"


def weights_folder(init: str) -> str:
    """The folder (path or URL) `--init` names: the shipped copy for "authors"."""
    return str(SHIPPED) if init == AUTHORS else init.rstrip("/")


def read_state(url: str, options: Mapping[str, Any] | None) -> dict[str, Tensor]:
    """One authors' file as a state dict (`weights_only`); anything else is a `UserError`."""
    import torch

    data = read_url(url, options)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UserError(f"cannot read {url} as a PyTorch state dict: {first_line(exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{url} is not a state dict of tensors")
    return state


def load_authors_weights(model: nn.Module, init: str, options: Mapping[str, Any] | None) -> None:
    """Load the four files in the folder `init` names into a `MicroAST`: every key of every
    file lands on the module it belongs to, with its shape; a file that does not fit is one
    `UserError` naming it."""
    folder = weights_folder(init)
    for module_name, file_name in FILES.items():
        url = posixpath.join(folder, file_name) if "://" in folder else str(Path(folder, file_name))
        load_module(getattr(model, module_name), read_state(url, options), url)


def fetch_authors_weights(source: str, folder: Path, options: Mapping[str, Any] | None) -> None:
    """Copy the four files from the folder URL `source` (e.g. `AUTHORS_URL`) into `folder`,
    with the licence shipped beside our copy (the authors' repository keeps it at its root)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        (folder / name).write_bytes(read_url(f"{source.rstrip('/')}/{name}", options))
    (folder / LICENSE).write_bytes((SHIPPED / LICENSE).read_bytes())


def load_module(module: nn.Module, state: Mapping[str, Tensor], url: str) -> None:
    """Strictly load one file into one module."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise UserError(
            f"{url} does not fit MicroAST's {type(module).__name__.lower()}: {len(missing)} "
            f"weights missing, {len(unexpected)} unexpected (e.g. {example})"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise UserError(
                f"{url} does not fit MicroAST's {type(module).__name__.lower()}: {key} has "
                f"shape {list(value.shape)}, expected {list(own[key].shape)}"
            )
    module.load_state_dict(state)
