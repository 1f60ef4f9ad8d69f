"""Fetch every model file a run needs, where the internet is, for a cluster that has none.

    python -m jobs.prepare_models --out /mnt/models              # SD 1.5, VGG19 and ResNet-50
    python -m jobs.prepare_models --out s3://BUCKET/models       # staged locally, then uploaded
    python -m jobs.prepare_models --out /mnt/models --dry-run    # what it would fetch

<out>/huggingface/hub/ is a Hugging Face cache holding the SD model: run with
HF_HOME=<out>/huggingface HF_HUB_OFFLINE=1 and the same --model id, or --model its snapshot
folder (printed at the end). <out>/torch/hub/checkpoints/ holds torchvision's ImageNet VGG19
(style losses) and ResNet-50 (student encoders) weights: run with TORCH_HOME=<out>/torch.
With none of --sd, --vgg, --resnet, all three are fetched.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import tyro

from common.cli import JobArgs, parse, run_cli
from common.errors import UserError, first_line
from common.storage import Storage, StorageOptions, is_local, open_fs
from teacher_workers.model_source import DEFAULT_MODEL_ID

# What the teacher loads from an SD-1.x repository, and nothing else (no fp16/EMA/.ckpt copies).
SD_FILES = (
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/*",
    "scheduler/*",
)
HF_HOME_DIR = "huggingface"
TORCH_CHECKPOINTS = "torch/hub/checkpoints"


# `--sd` alone is the default model; `--sd ID` names one
SD_FLAG = tyro.constructors.PrimitiveConstructorSpec(
    nargs=(0, 1),
    metavar="[MODEL_ID]",
    instance_from_str=lambda args: args[0] if args else DEFAULT_MODEL_ID,
    is_instance=lambda value: value is None or isinstance(value, str),
    str_from_instance=lambda value: [value] if value else [],
)


@dataclass(frozen=True, kw_only=True)
class Args(JobArgs):
    """The flags of `python -m jobs.prepare_models`."""

    out: str
    """local folder or URL (s3://...)"""
    sd: Annotated[
        str | None,
        SD_FLAG,
        tyro.conf.arg(help=f"a Stable Diffusion 1.x Hub id (alone: {DEFAULT_MODEL_ID})"),
    ] = None
    revision: str | None = None
    """revision of the --sd model"""
    vgg: bool = False
    """torchvision's ImageNet VGG19"""
    resnet: bool = False
    """torchvision's ImageNet ResNet-50"""
    dry_run: bool = False
    """list what would be fetched"""
    staging: str | None = None
    """local folder to fetch into before an upload"""
    storage: Annotated[StorageOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StorageOptions
    )


def chosen(args: Args) -> tuple[str | None, list[str]]:
    """The SD id and torchvision weight URLs to fetch (all when none is named), validated."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from torchvision.models import ResNet50_Weights, VGG19_Weights

    everything = not (args.sd or args.vgg or args.resnet)
    sd = DEFAULT_MODEL_ID if everything else args.sd
    if args.revision and not sd:
        raise UserError("--revision applies to the --sd model, which is not being fetched")
    if sd:
        try:
            validate_repo_id(sd)
        except HFValidationError as exc:
            raise UserError(f"--sd {sd!r} is not a Hugging Face id: {first_line(exc)}") from None
    urls = [
        weights.url
        for wanted, weights in (
            (args.vgg, VGG19_Weights.IMAGENET1K_V1),
            (args.resnet, ResNet50_Weights.IMAGENET1K_V1),
        )
        if wanted or everything
    ]
    return sd, urls


def plan_lines(sd: str | None, revision: str | None, urls: list[str], out: str) -> list[str]:
    """One line per download: what, from where, to where (below `out`)."""
    lines = []
    if sd:
        lines.append(
            f"{sd} (revision {revision or 'main'}): {', '.join(SD_FILES)} "
            f"-> {out}/{HF_HOME_DIR}/hub"
        )
    lines += [f"{url} -> {out}/{TORCH_CHECKPOINTS}/{posixpath.basename(url)}" for url in urls]
    return lines


def fetch_sd(sd: str, revision: str | None, folder: Path) -> Path:
    """The SD files into a Hugging Face cache under `folder`; returns the snapshot folder."""
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(
            sd,
            revision=revision,
            cache_dir=folder / HF_HOME_DIR / "hub",
            allow_patterns=list(SD_FILES),
        )
    except Exception as exc:  # network, authentication and missing repositories alike
        raise UserError(f"cannot download {sd}: {first_line(exc)}") from None
    return Path(snapshot)


def fetch_url(url: str, folder: Path) -> Path:
    """A torchvision weight file where torch.hub looks for it under TORCH_HOME, checked
    against the hash prefix in its name; a file already there is kept."""
    import torch.hub

    target = folder / TORCH_CHECKPOINTS / posixpath.basename(url)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(target.name)
    try:
        torch.hub.download_url_to_file(url, str(target), match.group(1) if match else None)
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot download {url}: {first_line(exc)}") from None
    return target


def upload(folder: Path, url: str, options: dict[str, Any]) -> int:
    """Copy every file below `folder` to the same relative key below `url`; symlinks (the Hub
    cache links snapshots to blobs) become plain copies, which readers of the cache accept.
    Hidden entries (the Hub client's lock files) stay behind. Returns the number of files."""
    fs, root = open_fs(url, options)
    files = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts)
    ]
    for path in files:
        target = posixpath.join(root.rstrip("/"), path.relative_to(folder).as_posix())
        try:
            fs.put_file(str(path), target)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot upload {path} to {url}: {first_line(exc)}") from None
    return len(files)


def prepare(sd: str | None, revision: str | None, urls: list[str], folder: Path) -> list[str]:
    """Fetch into `folder`; returns how a run finds each thing."""
    hints = []
    if sd:
        snapshot = fetch_sd(sd, revision, folder)
        hints.append(
            f"SD: HF_HOME={folder / HF_HOME_DIR} HF_HUB_OFFLINE=1 with --model {sd}, "
            f"or --model {snapshot}"
        )
    for url in urls:
        fetch_url(url, folder)
    if urls:
        hints.append(f"torchvision weights: TORCH_HOME={folder / 'torch'}")
    return hints


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.prepare_models", __doc__)
    sd, urls = chosen(args)
    remote = not is_local(args.out)
    if remote:
        Storage(args.out, args.storage).check_writable()
    if args.dry_run:
        print("\n".join(plan_lines(sd, args.revision, urls, args.out)))
        return 0
    if not remote:
        hints = prepare(sd, args.revision, urls, Path(args.out).expanduser().resolve())
        print("\n".join(hints))
        return 0
    with tempfile.TemporaryDirectory(dir=args.staging) as staging:
        prepare(sd, args.revision, urls, Path(staging))
        count = upload(Path(staging), args.out, args.storage)
    print(f"uploaded {count} files to {args.out}; copy or mount it on the cluster, then set")
    print(f"HF_HOME=<there>/{HF_HOME_DIR} HF_HUB_OFFLINE=1 and TORCH_HOME=<there>/torch")
    return 0


# `styleid-prepare-models` (pyproject.toml [project.scripts]) and `python -m jobs.prepare_models`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
