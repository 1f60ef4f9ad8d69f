"""Where a teacher's weights come from, checked before any work and named exactly.

A model is a preset, a local Stable Diffusion 1.x diffusers folder (`model_index.json`, `unet/`,
`vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`, as the Hub stores SD 1.5), a Hugging Face
id, fetched online or, with `HF_HUB_OFFLINE=1`, read from the cache under `HF_HOME`, as on an
air-gapped cluster, or a single-file checkpoint (one `.safetensors` in the original LDM layout).
A single file holds weights only: its component configs, tokenizer and scheduler come from a
diffusers folder or a Hub id read from the local cache only (`--model-config`, default SD 1.5's
id), so nothing is downloaded. `pin_model` turns a model into what a run on many machines needs:
the exact weights (a Hub id's commit, a folder's or a single file's content digest) and names
every node can load.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
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
DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SINGLE_FILE_SUFFIX = ".safetensors"
# Key prefixes of the original (CompVis LDM) SD-1.x checkpoint: all three parts must be there,
# so no weights are taken silently from the config folder instead.
LDM_PARTS = {
    "model.diffusion_model.": "the UNet",
    "first_stage_model.": "the VAE",
    "cond_stage_model.transformer.": "the CLIP text encoder",
}
# What a single file's config folder gives the teacher: configs, tokenizer files, no weights.
CONFIG_SUFFIXES = (".json", ".txt")
# What `ControlNetModel.from_pretrained` reads from a folder: its config and the weights beside it.
CONTROLNET_CONFIG = "config.json"


@dataclass(frozen=True)
class PinnedModel:
    """A model as every node of a run loads it: `name` (an absolute folder or file, or a Hub
    id), the Hub commit (of a single file's config), the config of a single file (an absolute
    folder or a Hub id), and for a folder or file the digest of what is read (which names it in
    the teacher hash, so moving it keeps finished targets and changing its weights does not)."""

    name: str
    revision: str | None
    digest: str | None
    config: str | None = None


def is_single_file(model: str) -> bool:
    """A `.safetensors` path names a single-file checkpoint (whether or not it exists yet)."""
    return Path(model).suffix == SINGLE_FILE_SUFFIX


def hub_hint() -> str:
    """What a Hub id needs in this process: the cache when offline, else the network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return f"HF_HUB_OFFLINE is set: only the cache {constants.HF_HUB_CACHE} is read"
    return "a Hub id needs network access, or a cached copy (HF_HOME) with HF_HUB_OFFLINE=1"


def safetensors_keys(path: Path, what: str) -> list[str]:
    """The tensor names of a safetensors file, from its header (checked against the file size;
    no tensor is read); a truncated or foreign file is a one-line `UserError`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError) as exc:
        raise UserError(
            f"{what} is damaged or not a safetensors file ({first_line(exc)})"
        ) from None


def check_folder(folder: Path, what: str, weights: bool = True) -> None:
    """Every part the teacher loads is present with its config and (unless the folder only
    configures a single file) weights, and every safetensors file is whole, so a broken folder
    fails in one line before any work instead of in every actor."""
    for part, config in CONFIG_FILES.items():
        if not (folder / part).is_dir():
            raise UserError(f"{what}: no {part}/ ({LAYOUT})")
        if not (folder / part / config).is_file():
            raise UserError(f"{what}: no {part}/{config}")
        if part in WEIGHTED_PARTS and weights:
            check_weights(folder / part, what, f"{part}/")


def check_weights(folder: Path, what: str, where: str = "") -> None:
    """`folder` holds weights and every safetensors file among them is whole."""
    files = [p for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES]
    if not files:
        raise UserError(f"{what}: no weights (*.safetensors or *.bin) in {where or 'it'}")
    for path in files:
        if path.suffix == ".safetensors":
            safetensors_keys(path, f"{what}: {where}{path.name}")


def check_controlnet_folder(folder: Path, what: str) -> None:
    """A diffusers ControlNet folder: `config.json` and whole weights beside it."""
    if not (folder / CONTROLNET_CONFIG).is_file():
        raise UserError(f"{what}: no {CONTROLNET_CONFIG} (a diffusers ControlNet folder)")
    check_weights(folder, what)


def check_single_file(path: Path) -> None:
    """The file is a whole safetensors file holding all three parts of an SD-1.x checkpoint in
    the original LDM layout (SD 2.x and SDXL name their text encoders differently)."""
    what = f"model file {path}"
    if not path.is_file():
        raise UserError(f"{what}: no such file")
    keys = safetensors_keys(path, what)
    for prefix, part in LDM_PARTS.items():
        if not any(key.startswith(prefix) for key in keys):
            raise UserError(
                f"{what} is not a Stable Diffusion 1.x checkpoint in the original LDM layout: "
                f"no {prefix}* tensors ({part})"
            )


def folder_files(folder: Path, suffixes: tuple[str, ...] | None = None) -> dict[str, Path]:
    """`model_index.json` and every file in the parts the teacher loads (only those ending in
    `suffixes`, if given), by their relative paths, sorted."""
    return visible_files(
        folder, [folder / "model_index.json", *(folder / part for part in CONFIG_FILES)], suffixes
    )


def visible_files(
    folder: Path, roots: list[Path], suffixes: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """Each of `roots` that is a file, and every file below those that are folders, except
    hidden ones (only those ending in `suffixes`, if given), by their paths relative to
    `folder`, sorted."""
    paths = sorted(
        p
        for f in roots
        for p in ([f] if f.is_file() else f.rglob("*"))
        if p.is_file()
        and not any(s.startswith(".") for s in p.relative_to(folder).parts)
        and (suffixes is None or p.suffix in suffixes)
    )
    return {path.relative_to(folder).as_posix(): path for path in paths}


def files_digest(files: dict[str, Path]) -> str:
    """SHA-256 over the name, size and bytes of each file: reads all weights once (seconds for
    SD 1.5), in the driver only."""
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """The digest of everything the teacher reads from a diffusers folder."""
    files = folder_files(folder)
    digest = files_digest(files)
    log.info("model folder %s: %d files, sha256 %s", folder, len(files), digest)
    return digest


def single_file_digest(path: Path, config: Path) -> str:
    """The digest of a single file's weights and of the configs, tokenizer and scheduler its
    config folder gives it: both decide the targets. The file counts by its bytes, not its name."""
    files = {SINGLE_FILE_SUFFIX: path, **folder_files(config, CONFIG_SUFFIXES)}
    digest = files_digest(files)
    log.info("model file %s with the config %s: sha256 %s", path, config, digest)
    return digest


def hub_snapshot(
    model_id: str,
    revision: str | None,
    index: str = "model_index.json",
    check: Callable[[Path, str], None] = check_folder,
    kind: str = "model",
) -> Path:
    """The snapshot folder of a Hub id at `revision` (default: main), named by its commit.

    Only `index` is fetched (online) or looked up (offline); with HF_HUB_OFFLINE the whole
    snapshot is then checked (`check`), since no node of the run could fetch a missing part.
    """
    from huggingface_hub import constants, hf_hub_download

    at = f" at revision {revision!r}" if revision else ""
    try:
        snapshot = Path(hf_hub_download(model_id, index, revision=revision)).parent
    except Exception as exc:  # network, authentication and cache misses all end the same way
        raise UserError(
            f"cannot find {kind} {model_id!r}{at} ({hub_hint()}): {first_line(exc)}"
        ) from None
    if constants.HF_HUB_OFFLINE:
        check(snapshot, f"{kind} {model_id!r} in the Hugging Face cache ({snapshot})")
    return snapshot


def config_source(model: str, config: str | None) -> str:
    """Where a model's component configs are read: the model itself, or for a single file its
    `--model-config` (SD 1.5's Hub id if none is given)."""
    if is_single_file(model):
        return config or DEFAULT_MODEL_ID
    return model


def single_file_config(config: str, revision: str | None) -> Path:
    """The local diffusers folder that configures a single file: `config` itself, or the
    snapshot of a Hub id in the local Hugging Face cache (never fetched). Only configs,
    tokenizer and scheduler are needed there; the folder's weights, if any, are not read."""
    folder = Path(config).expanduser()
    if folder.is_dir():
        if revision:
            raise UserError(f"--revision applies to Hub ids, not to the config folder {config}")
        check_folder(folder, f"model config folder {folder}", weights=False)
        return folder.resolve()
    from huggingface_hub import constants, hf_hub_download

    at = f" at revision {revision!r}" if revision else ""
    try:
        index = hf_hub_download(
            config, "model_index.json", revision=revision, local_files_only=True
        )
    except Exception as exc:  # a cache miss or a malformed id: either way, not here
        raise UserError(
            f"cannot find the config {config!r}{at} of the single-file model in the Hugging Face "
            f"cache {constants.HF_HUB_CACHE} ({first_line(exc)}): pass --model-config DIR (an SD "
            "1.x diffusers folder; its weights are not read) or cache that id where the internet "
            "is (python -m jobs.prepare_models --sd ID, then HF_HOME=OUT/huggingface)"
        ) from None
    snapshot = Path(index).parent
    check_folder(snapshot, f"model config {config!r} in the Hugging Face cache ({snapshot})", False)
    return snapshot


def pin_model(model: str, revision: str | None, config: str | None = None) -> PinnedModel:
    """The exact weights a run will use, checked: a folder by its digest, a Hub id by the
    commit its revision points to now (so actors started later load that same commit), a
    single file by the digest of its bytes and its configs, which are pinned like a model."""
    if is_single_file(model):
        path = Path(model).expanduser().resolve()
        check_single_file(path)
        source = config_source(model, config)
        folder = single_file_config(source, revision)
        is_hub = not Path(source).expanduser().is_dir()
        return PinnedModel(
            str(path),
            folder.name if is_hub else None,
            single_file_digest(path, folder),
            source if is_hub else str(folder),
        )
    folder = Path(model).expanduser()
    if folder.is_dir():
        if revision:
            raise UserError(f"--revision applies to Hub ids, not to the model folder {model}")
        folder = folder.resolve()
        check_folder(folder, f"model folder {folder}")
        return PinnedModel(str(folder), None, folder_digest(folder))
    return PinnedModel(model, hub_snapshot(model, revision).name, None)


def pin_controlnet(name: str, revision: str | None) -> PinnedModel:
    """A ControlNet pinned as `pin_model` pins a model: a folder by the digest of its files
    (so a renamed copy keeps its targets), a Hub id by the commit its revision points to now."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        if revision:
            raise UserError(
                f"--controlnet-revision applies to Hub ids, not to the ControlNet folder {name}"
            )
        folder = folder.resolve()
        what = f"ControlNet folder {folder}"
        check_controlnet_folder(folder, what)
        files = visible_files(folder, [folder])
        digest = files_digest(files)
        log.info("%s: %d files, sha256 %s", what, len(files), digest)
        return PinnedModel(str(folder), None, digest)
    commit = hub_snapshot(name, revision, CONTROLNET_CONFIG, check_controlnet_folder, "ControlNet")
    return PinnedModel(name, commit.name, None)
