"""Where the student side's pretrained weights (VGG19 for the Gram loss, the evaluation's
perceptual losses and CFSD, ResNet-50 for `--init imagenet`, AlexNet for LPIPS, Inception for
FID) come from, in this order:

1. an explicit file (`--vgg-weights` / `--backbone-weights`): a local path or any fsspec URL
   holding a torchvision state dict (`torch.save`, read with `weights_only=True`, or
   `.safetensors`), so an air-gapped cluster can read them from its own object storage;
2. torch hub's cache, `torch.hub.get_dir()/checkpoints/<file name of the weights URL>`
   (`$TORCH_HOME/hub/checkpoints/`, by default `~/.cache/torch/hub/checkpoints/`), read
   without any network access, so a pre-seeded node needs no flag;
3. torch hub's download into that cache, unless `HF_HUB_OFFLINE` is set: the variable an
   air-gapped cluster already sets for the teacher's Hugging Face models, so it never waits on
   a connection that cannot succeed.

The explicit file travels to the Ray workers as its URL in the `TrainConfig`, never as
tensors; the cache is looked up on each node, because its path is the node's own.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn
from torchvision.models import ResNet50_Weights, VGG19_Weights

from common.errors import UserError, first_line
from common.storage import read_url
from student.choices import RANDOM

logger = logging.getLogger(__name__)

OFFLINE_VARIABLE = "HF_HUB_OFFLINE"


class WeightsUnavailable(UserError):
    """No explicit file, nothing in the hub cache, and no download (offline or failed)."""


@dataclass(frozen=True)
class Network:
    """A network whose pretrained weights the student side uses."""

    name: str
    flag: str  # the command-line option that names a weights file for it
    url: str  # where torch hub downloads them from (torchvision's or the metric library's)
    prefix: str  # of the keys in the published state dict that the project's modules use

    @property
    def cache_file(self) -> Path:
        """Where torch hub keeps (and looks for) the downloaded weights on this node."""
        name = posixpath.basename(urlparse(self.url).path)
        return Path(torch.hub.get_dir()) / "checkpoints" / name


VGG19 = Network("VGG19", "--vgg-weights", VGG19_Weights.IMAGENET1K_V1.url, "features.")
# V1, the weights of torchvision's old `pretrained=True`, which the STTR authors trained from
RESNET50 = Network("ResNet-50", "--backbone-weights", ResNet50_Weights.IMAGENET1K_V1.url, "")


def offline() -> bool:
    """Whether downloads are off (`HF_HUB_OFFLINE` set to 1/true/yes/on)."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def load_pretrained(
    network: Network, choice: str | None, options: Mapping[str, Any] | None, *modules: nn.Module
) -> bool:
    """Load `network`'s weights into `modules`: from `choice` (a path/URL) if given, else the
    hub cache, else a download. False, with one warning, when `choice` is "random";
    `WeightsUnavailable` when nothing can be found, a `UserError` when what is found does not
    fit."""
    if choice == RANDOM:
        logger.warning(
            "%s %s: using a random %s as asked; what it measures means little",
            network.flag,
            RANDOM,
            network.name,
        )
        return False
    source = choice or str(network.cache_file)
    if choice or network.cache_file.is_file():
        state = read_state(network, source, options if choice else None)
    else:
        state = strip_prefix(network, download(network))
    for module in modules:
        load_into(module, state, network, source)
    return True


def load_instrument(
    network: Network, choice: str | None, options: Mapping[str, Any] | None, *modules: nn.Module
) -> str:
    """`load_pretrained` for a measuring network (VGG19, LPIPS's AlexNet): no weights is an
    error, not a silent random network, since a random one still measures, meaninglessly, and
    that only shows much later. Returns where the weights came from ("random" when asked),
    so a report can say which of its figures mean nothing. A random one is seeded: its
    figures mean little, but the same inputs give the same figures in every run."""
    try:
        loaded = load_pretrained(network, choice, options, *modules)
    except WeightsUnavailable as exc:
        raise WeightsUnavailable(f"{exc}; or {network.flag} {RANDOM} to use a random one") from None
    if not loaded:  # the same random network in every run, so that its figures repeat
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for layer in (layer for module in modules for layer in module.modules()):
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
    return (choice or str(network.cache_file)) if loaded else RANDOM


def download(network: Network) -> dict[str, Any]:
    """torch hub's download of the weights into its cache, unless offline."""
    cache = network.cache_file
    if offline():
        reason = f"{OFFLINE_VARIABLE} is set, so no download was tried"
    else:
        try:
            return torch.hub.load_state_dict_from_url(network.url, progress=False, check_hash=True)
        except (OSError, RuntimeError) as exc:  # offline, blocked or corrupt download
            reason = f"the download failed: {first_line(exc)}"
    raise WeightsUnavailable(
        f"no {network.name} weights: pass {network.flag} PATH_OR_URL or put "
        f"{cache.name} in {cache.parent} ({reason})"
    )


def read_state(network: Network, url: str, options: Mapping[str, Any] | None) -> dict[str, Tensor]:
    """A state dict from a `torch.save` or `.safetensors` file; unreadable is a `UserError`."""
    data = read_url(url, options)
    try:
        if url.endswith(".safetensors"):
            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, SafetensorError) as exc:
        raise UserError(f"cannot read {url} as {network.name} weights: {first_line(exc)}") from None
    if not isinstance(state, dict):
        raise UserError(f"{url} is not a state dict of {network.name} weights")
    return strip_prefix(network, state)


def strip_prefix(network: Network, state: Mapping[str, Any]) -> dict[str, Any]:
    """Keys as the project's module has them: "features.0.weight" -> "0.weight" for VGG19."""
    return {str(key).removeprefix(network.prefix): value for key, value in state.items()}


def load_into(module: nn.Module, state: Mapping[str, Any], network: Network, source: str) -> None:
    """Load every tensor `module` has from `state` (others, like the classifier, are unused).

    A missing tensor or a wrong shape is a one-line `UserError` naming the key as torchvision
    does, rather than load_state_dict's many-line report.
    """
    own = module.state_dict()
    for key, value in own.items():
        found = state.get(key)
        name = network.prefix + key
        if not isinstance(found, Tensor):
            raise UserError(f"{source} does not hold {network.name} weights: it has no {name}")
        if found.shape != value.shape:
            raise UserError(
                f"{source} does not hold {network.name} weights: {name} is "
                f"{list(found.shape)}, {network.name} has {list(value.shape)}"
            )
    module.load_state_dict({key: state[key] for key in own})
