"""Small training runs shared by the `jobs.train` tests: a tiny student on the synthetic run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from ray.train import Result

from jobs.train import build_trainer, validate
from student.losses import vgg19_features
from student.model import STTRConfig
from student.train_config import TrainConfig
from student.train_loop import metrics_key

SIZE = 64
SMALL_MODEL = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=256, dropout=0.0)


def small_config(data: str, name: str, **changes: Any) -> TrainConfig:
    """Two workers overfitting four pairs (crop = whole image) at a rate that learns fast."""
    settings: dict[str, Any] = {
        "workers": 2,
        "epochs": 4,
        "batch_size": 2,
        "lr": 1e-4,
        "crop_size": SIZE,
        "init": "scratch",
        "loader_workers": 0,
        "lr_patience": 5,
        "model": SMALL_MODEL,
    }
    return TrainConfig(data=data, name=name, **{**settings, **changes})


def write_seeded_vgg19(path: Path) -> str:
    """Seeded VGG19 features weights saved as torchvision names them ("features.N.weight"):
    a Gram term that is the same in every process, without ImageNet weights."""
    torch.manual_seed(0)
    state = {f"features.{key}": value for key, value in vgg19_features().state_dict().items()}
    torch.save(state, path)
    return str(path)


def fit(config: TrainConfig) -> Result:
    return build_trainer(config, validate(config)).fit()


def history(config: TrainConfig) -> list[dict[str, Any]]:
    storage = config.storage()
    return [json.loads(line) for line in storage.read_bytes(metrics_key(config.name)).splitlines()]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of every file below `folder`: what "touches nothing" means."""
    return {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }
