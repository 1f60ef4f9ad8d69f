"""Fetch every model file a run needs, where the internet is, for a cluster that has none.

    python -m jobs.prepare_models --out /mnt/models              # everything below
    python -m jobs.prepare_models --out s3://BUCKET/models       # staged locally, then uploaded
    python -m jobs.prepare_models --out /mnt/models --dry-run    # what it would fetch

<out>/huggingface/hub/ is a Hugging Face cache holding the SD model and LSAST's canny
ControlNet: run with HF_HOME=<out>/huggingface HF_HUB_OFFLINE=1 and the same --model and
--controlnet ids, or --model its snapshot folder (printed at the end).
<out>/torch/hub/checkpoints/ holds torchvision's ImageNet VGG19 (style losses) and ResNet-50
(student encoders) weights, and with --metrics the evaluation's AlexNet (LPIPS) and pytorch-fid's
Inception (FID): run with TORCH_HOME=<out>/torch. <out>/microast/ holds the MicroAST authors'
released weights, fetched from their repository (a copy also ships with the project): train
with --arch microast --init <out>/microast. With none of --sd, --controlnet, --vgg, --resnet,
--metrics, --microast, everything is fetched.
"""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import tyro

from common.cli import StorageJobArgs, parse, run_cli
from common.errors import UserError, first_line
from common.storage import Storage, is_local, open_fs
from student.microast_weights import AUTHORS_URL, FILES, fetch_authors_weights
from teacher_workers.lsast.config import DEFAULT_CONTROLNET
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
CONTROLNET_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
HF_HOME_DIR = "huggingface"
TORCH_CHECKPOINTS = "torch/hub/checkpoints"
MICROAST_DIR = "microast"


def hub_id_flag(flag: str, default: str) -> tyro.constructors.PrimitiveConstructorSpec:
    """A flag that alone means `default` and with a value names another Hub id (`--sd`); a
    malformed id is a `UserError`."""

    def hub_id(args: list[str]) -> str:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        repo_id = args[0] if args else default
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            message = f"{flag} {repo_id!r} is not a Hugging Face id: {first_line(exc)}"
            raise UserError(message) from None
        return repo_id

    return tyro.constructors.PrimitiveConstructorSpec(
        nargs=(0, 1),
        metavar="[MODEL_ID]",
        instance_from_str=hub_id,
        is_instance=lambda value: value is None or isinstance(value, str),
        str_from_instance=lambda value: [value] if value else [],
    )


@dataclass(frozen=True, kw_only=True)
class Args(StorageJobArgs):
    """The flags of `python -m jobs.prepare_models`."""

    out: str
    """local folder or URL (s3://...)"""
    sd: Annotated[
        str | None,
        hub_id_flag("--sd", DEFAULT_MODEL_ID),
        tyro.conf.arg(help=f"a Stable Diffusion 1.x Hub id (alone: {DEFAULT_MODEL_ID})"),
    ] = None
    revision: str | None = None
    """revision of the --sd model"""
    controlnet: Annotated[
        str | None,
        hub_id_flag("--controlnet", DEFAULT_CONTROLNET),
        tyro.conf.arg(help=f"LSAST's canny ControlNet, a Hub id (alone: {DEFAULT_CONTROLNET})"),
    ] = None
    vgg: bool = False
    """torchvision's ImageNet VGG19"""
    resnet: bool = False
    """torchvision's ImageNet ResNet-50"""
    metrics: bool = False
    """the golden-set metrics' AlexNet (LPIPS) and Inception (FID) weights"""
    microast: bool = False
    """the MicroAST authors' released weights (four files, 1.9 MB)"""
    microast_source: str = AUTHORS_URL
    """folder URL to fetch --microast from (the authors' repository at a fixed commit)"""
    dry_run: bool = False
    """list what would be fetched"""
    staging: str | None = None
    """local folder to fetch into before an upload"""


class HubRepo(NamedTuple):
    """A Hugging Face repository to cache, and the files a run reads from it."""

    flag: str  # the flag of a run that names it
    repo_id: str
    revision: str | None
    files: tuple[str, ...]


class Plan(NamedTuple):
    """What to fetch: Hub repositories, torch hub weight URLs, and the folder URL of the
    MicroAST authors' weights (None: not wanted)."""

    repos: list[HubRepo]
    urls: list[str]
    microast: str | None


def chosen(args: Args) -> Plan:
    """The Hub repositories, torch hub weight URLs and MicroAST weights to fetch: those named,
    or all."""
    from torchvision.models import ResNet50_Weights, VGG19_Weights

    from evaluation.golden_metrics import ALEXNET, INCEPTION

    named = (args.sd, args.controlnet, args.vgg, args.resnet, args.metrics, args.microast)
    everything = not any(named)
    sd = DEFAULT_MODEL_ID if everything else args.sd
    controlnet = DEFAULT_CONTROLNET if everything else args.controlnet
    if args.revision and not sd:
        raise UserError("--revision applies to the --sd model, which is not being fetched")
    repos = [HubRepo("--model", sd, args.revision, SD_FILES)] if sd else []
    if controlnet:
        repos.append(HubRepo("--controlnet", controlnet, None, CONTROLNET_FILES))
    wanted = {
        VGG19_Weights.IMAGENET1K_V1.url: args.vgg,
        ResNet50_Weights.IMAGENET1K_V1.url: args.resnet,
        ALEXNET.url: args.metrics,
        INCEPTION.url: args.metrics,
    }
    urls = [url for url, named in wanted.items() if named or everything]
    return Plan(repos, urls, args.microast_source if args.microast or everything else None)


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


def prepare(plan: Plan, folder: Path, options: dict[str, Any]) -> list[str]:
    """Fetch into `folder`; returns how a run finds each thing. The repositories go to a Hugging
    Face cache; each torchvision weight file goes where torch.hub looks for it under TORCH_HOME,
    fetched by torch.hub itself: checked against the hash prefix in its name, kept if already
    there, and loaded once (a damaged file fails here, not on the cluster). The MicroAST
    weights are loaded into the model once, strictly, for the same reason."""
    import torch.hub
    from huggingface_hub import snapshot_download

    hints = []
    if plan.microast:
        fetch_authors_weights(plan.microast, folder / MICROAST_DIR, options)
        from student.microast import MicroASTConfig, build_microast  # torch: not for --help

        build_microast(MicroASTConfig(), str(folder / MICROAST_DIR))  # loads strictly, or fails
        hints.append(f"MicroAST: --arch microast --init {folder / MICROAST_DIR}")
    repos, urls = plan.repos, plan.urls
    for repo in repos:
        try:
            snapshot = snapshot_download(
                repo.repo_id,
                revision=repo.revision,
                cache_dir=folder / HF_HOME_DIR / "hub",
                allow_patterns=list(repo.files),
            )
        except Exception as exc:  # network, authentication and missing repositories alike
            raise UserError(f"cannot download {repo.repo_id}: {first_line(exc)}") from None
        hints.append(
            f"{repo.repo_id}: HF_HOME={folder / HF_HOME_DIR} HF_HUB_OFFLINE=1 with "
            f"{repo.flag} {repo.repo_id}, or {repo.flag} {snapshot}"
        )
    for url in urls:
        try:
            torch.hub.load_state_dict_from_url(
                url, str(folder / TORCH_CHECKPOINTS), check_hash=True
            )
        except (OSError, RuntimeError) as exc:
            raise UserError(f"cannot download {url}: {first_line(exc)}") from None
    if urls:
        hints.append(f"torch hub weights: TORCH_HOME={folder / 'torch'}")
    return hints


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(Args, argv, "jobs.prepare_models", __doc__)
    plan = chosen(args)
    remote = not is_local(args.out)
    if remote:
        Storage(args.out, args.storage).check_writable()
    if args.dry_run:  # one line per download: what, from where, to where
        for repo in plan.repos:
            what = f"{repo.repo_id} (revision {repo.revision or 'main'}): {', '.join(repo.files)}"
            print(f"{what} -> {args.out}/{HF_HOME_DIR}/hub")
        for url in plan.urls:
            print(f"{url} -> {args.out}/{TORCH_CHECKPOINTS}/{posixpath.basename(url)}")
        if plan.microast:
            print(f"{plan.microast}/{{{','.join(FILES.values())}}} -> {args.out}/{MICROAST_DIR}")
        return 0
    if not remote:
        print("\n".join(prepare(plan, Path(args.out).expanduser().resolve(), args.storage)))
        return 0
    with tempfile.TemporaryDirectory(dir=args.staging) as staging:
        prepare(plan, Path(staging), args.storage)
        count = upload(Path(staging), args.out, args.storage)
    print(f"uploaded {count} files to {args.out}; copy or mount it on the cluster, then set")
    print(f"HF_HOME=<there>/{HF_HOME_DIR} HF_HUB_OFFLINE=1 and TORCH_HOME=<there>/torch")
    return 0


cli = partial(run_cli, main)  # the console script `styleid-prepare-models` (pyproject.toml)

if __name__ == "__main__":
    cli()
