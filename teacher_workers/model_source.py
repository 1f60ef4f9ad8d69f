"""Where a teacher's weights come from, checked before any work and named exactly.

A model is a preset, a local Stable Diffusion 1.x diffusers folder (`model_index.json`, `unet/`,
`vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`, as the Hub stores SD 1.5) or a Hugging Face
id, fetched online or, with `HF_HUB_OFFLINE=1`, read from the cache under `HF_HOME`, as on an
air-gapped cluster. `pin_model` turns one into what a run on many machines needs: the exact
weights (a Hub id's commit, a folder's content digest) and a name every node can load.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError, first_line

log = logging.getLogger(__name__)

# The parts the teacher loads, with the file each must hold.
CONFIG_FILES = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "tokenizer": "tokenizer_config.json",
    "scheduler": "scheduler_config.json",
}
WEIGHTED_PARTS = ("unet", "vae", "text_encoder")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
LAYOUT = "a Stable Diffusion 1.x diffusers folder has " + ", ".join(f"{p}/" for p in CONFIG_FILES)
CHUNK = 1 << 24


@dataclass(frozen=True)
class PinnedModel:
    """A model as every node of a run loads it: `name` (an absolute folder or a Hub id), the
    Hub commit, and for a folder the digest of its files (which names it in the teacher hash,
    so moving the folder keeps finished targets and changing its weights does not)."""

    name: str
    revision: str | None
    digest: str | None


def hub_hint() -> str:
    """What a Hub id needs in this process: the cache when offline, else the network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return f"HF_HUB_OFFLINE is set: only the cache {constants.HF_HUB_CACHE} is read"
    return "a Hub id needs network access, or a cached copy (HF_HOME) with HF_HUB_OFFLINE=1"


def check_folder(folder: Path, what: str) -> None:
    """Every part the teacher loads is present with its config and weights, and every
    safetensors file is whole (its header is checked against the file size; no tensor is
    read), so a broken folder fails in one line before any work instead of in every actor."""
    from safetensors import SafetensorError, safe_open

    for part, config in CONFIG_FILES.items():
        if not (folder / part).is_dir():
            raise UserError(f"{what}: no {part}/ ({LAYOUT})")
        if not (folder / part / config).is_file():
            raise UserError(f"{what}: no {part}/{config}")
        if part not in WEIGHTED_PARTS:
            continue
        weights = [p for p in sorted((folder / part).iterdir()) if p.suffix in WEIGHT_SUFFIXES]
        if not weights:
            raise UserError(f"{what}: no weights (*.safetensors or *.bin) in {part}/")
        for path in weights:
            if path.suffix != ".safetensors":
                continue
            try:
                with safe_open(str(path), "pt"):
                    pass
            except (SafetensorError, OSError) as exc:
                raise UserError(
                    f"{what}: {part}/{path.name} is damaged or not a safetensors file "
                    f"({first_line(exc)})"
                ) from None


def folder_digest(folder: Path) -> str:
    """SHA-256 over the relative path and bytes of `model_index.json` and every file in the
    parts the teacher loads: reads all weights once (seconds for SD 1.5), in the driver only."""
    files = [folder / "model_index.json", *(folder / part for part in CONFIG_FILES)]
    paths = sorted(
        p
        for f in files
        for p in ([f] if f.is_file() else f.rglob("*"))
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    log.info("model folder %s: %d files, sha256 %s", folder, len(paths), digest.hexdigest())
    return digest.hexdigest()


def hub_snapshot(model_id: str, revision: str | None) -> Path:
    """The snapshot folder of a Hub id at `revision` (default: main), named by its commit.

    Only `model_index.json` is fetched (online) or looked up (offline); with HF_HUB_OFFLINE
    the whole snapshot is then checked, since no node of the run could fetch a missing part.
    """
    from huggingface_hub import constants, hf_hub_download

    at = f" at revision {revision!r}" if revision else ""
    try:
        snapshot = Path(hf_hub_download(model_id, "model_index.json", revision=revision)).parent
    except Exception as exc:  # network, authentication and cache misses all end the same way
        raise UserError(
            f"cannot find model {model_id!r}{at} ({hub_hint()}): {first_line(exc)}"
        ) from None
    if constants.HF_HUB_OFFLINE:
        check_folder(snapshot, f"model {model_id!r} in the Hugging Face cache ({snapshot})")
    return snapshot


def pin_model(model: str, revision: str | None) -> PinnedModel:
    """The exact weights a run will use, checked: a folder by its digest, a Hub id by the
    commit its revision points to now (so actors started later load that same commit)."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        if revision:
            raise UserError(f"--revision applies to Hub ids, not to the model folder {model}")
        folder = folder.resolve()
        check_folder(folder, f"model folder {folder}")
        return PinnedModel(str(folder), None, folder_digest(folder))
    return PinnedModel(model, hub_snapshot(model, revision).name, None)
