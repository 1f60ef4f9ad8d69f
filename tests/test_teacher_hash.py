"""The teacher hash names the folder targets are stored under, so two settings that make
different targets must never share it, and settings that do not change a target must keep it
(or a re-run would redo finished work).

Changes a target: model and revision, dtype, steps, gamma, T, injected layers, resolution,
AdaIN and injection switches, VAE encoding (posterior mean or seeded sample) and the seed
(which seeds the sample noise and the preset models' random weights).
Does not: batch size (pairs per UNet call; the posterior-sample noise is per image, so
batch-invariant), feature offload (where features wait between inversion and sampling) and
device placement (which GPU, or `--device` at all once the dtype is explicit).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch

from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.model_source import CONFIG_FILES, WEIGHTED_PARTS
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import DEFAULT_LAYERS, StyleIDConfig

CPU, GPU = torch.device("cpu"), torch.device("cuda")
BASE = TeacherOptions(model="sd15-random", dtype="float16")
# Today's hashes of three stored runs' teachers (computed before the teachers moved packages).
STYLEID_DEFAULT_HASH = "11ea91cb9ccff094"
LSAST_DEFAULT_HASH = "8615528df8db5baa"
PINNED_FOLDER_HASH = "0fc7ccf97a837903"


def with_styleid(**changes: object) -> TeacherOptions:
    """BASE with some StyleID settings changed."""
    return dataclasses.replace(BASE, styleid=StyleIDConfig(**changes))


# One setting changed at a time, each to a value that makes different targets.
TARGET_CHANGES: dict[str, TeacherOptions] = {
    "model": dataclasses.replace(BASE, model="tiny"),
    "revision": dataclasses.replace(BASE, revision="0123abc"),
    "dtype": dataclasses.replace(BASE, dtype="bfloat16"),
    "steps": with_styleid(steps=25),
    "gamma": with_styleid(gamma=0.5),
    "temperature": with_styleid(temperature=1.0),
    "layers": with_styleid(layers=DEFAULT_LAYERS[:3]),
    "resolution": with_styleid(resolution=256),
    "adain": with_styleid(adain=False),
    "inject": with_styleid(inject=False),
    "encode": with_styleid(encode="sample"),
    "seed": with_styleid(seed=1),
}


@pytest.mark.parametrize("setting", sorted(TARGET_CHANGES))
def test_each_setting_that_changes_a_target_changes_the_hash(setting: str) -> None:
    """Protects against a setting left out of the hash: its targets would overwrite, or be
    skipped as already done by, another setting's targets."""
    assert TARGET_CHANGES[setting].hash(GPU) != BASE.hash(GPU)


def test_no_two_settings_share_a_hash() -> None:
    """All single-setting variants and the base are pairwise distinct."""
    hashes = {"base": BASE.hash(GPU)} | {k: v.hash(GPU) for k, v in TARGET_CHANGES.items()}
    for (a, hash_a), (b, hash_b) in itertools.combinations(hashes.items(), 2):
        assert hash_a != hash_b, (a, b)


@pytest.mark.parametrize(
    "same",
    [
        with_styleid(batch_size=1),
        dataclasses.replace(BASE, offload=True),
        dataclasses.replace(BASE, offload=False),
        dataclasses.replace(BASE, device="cuda:1"),
        dataclasses.replace(BASE, device="cpu"),
    ],
    ids=["batch_size", "offload", "no-offload", "other-gpu", "cpu-device"],
)
def test_settings_that_do_not_change_a_target_keep_the_hash(same: TeacherOptions) -> None:
    """Protects re-runs: changing how work is batched or placed must find the finished pairs."""
    assert same.hash(GPU) == BASE.hash(GPU)
    assert same.hash(CPU) == BASE.hash(CPU)  # explicit dtype: the hardware does not matter


def test_auto_dtype_hashes_as_the_dtype_it_resolves_to() -> None:
    """`auto` is float16 on a GPU and float32 on the CPU: the hash follows what actually runs."""
    auto = dataclasses.replace(BASE, dtype="auto")
    assert auto.hash(GPU) == BASE.hash(GPU)
    assert auto.hash(CPU) == dataclasses.replace(BASE, dtype="float32").hash(CPU)
    assert auto.hash(CPU) != auto.hash(GPU)


LSAST_BASE = dataclasses.replace(BASE, kind="lsast")


def with_lsast(**changes: object) -> TeacherOptions:
    """LSAST_BASE with some LSAST settings changed."""
    return dataclasses.replace(LSAST_BASE, lsast=LSASTConfig(**changes))


LSAST_CHANGES: dict[str, TeacherOptions] = {
    "model": dataclasses.replace(LSAST_BASE, model="tiny"),
    "dtype": dataclasses.replace(LSAST_BASE, dtype="bfloat16"),
    "steps": with_lsast(steps=25),
    "strength": with_lsast(strength=0.5),
    "guidance": with_lsast(guidance=7.5),
    "control_scale": with_lsast(control_scale=0.8),
    "canny_low": with_lsast(canny=(50, 200)),
    "canny_high": with_lsast(canny=(100, 150)),
    "stage_indexing": with_lsast(stage_indexing="paper"),
    "prompt_dropout": with_lsast(prompt_dropout=True),
    "resolution": with_lsast(resolution=256),
    "seed": with_lsast(seed=0),
    "controlnet": with_lsast(controlnet="tiny"),
}


def test_every_lsast_setting_has_its_own_hash_and_the_teachers_never_share_one() -> None:
    """LSAST targets never mix with StyleID's, nor with LSAST's under other settings."""
    hashes = {"styleid": BASE.hash(GPU), "lsast": LSAST_BASE.hash(GPU)}
    hashes |= {f"lsast-{k}": v.hash(GPU) for k, v in LSAST_CHANGES.items()}
    for (a, hash_a), (b, hash_b) in itertools.combinations(hashes.items(), 2):
        assert hash_a != hash_b, (a, b)
    assert with_lsast(batch_size=1).hash(GPU) == LSAST_BASE.hash(GPU)
    # StyleID settings do not name LSAST targets
    assert dataclasses.replace(LSAST_BASE, styleid=StyleIDConfig(gamma=0.1)).hash(GPU) == (
        LSAST_BASE.hash(GPU)
    )


def pinned_folder(root: Path) -> Path:
    """A diffusers-layout folder of fixed bytes: what the teacher reads, for `folder_digest`."""
    folder = root / "any-name"
    for part, config in CONFIG_FILES.items():
        (folder / part).mkdir(parents=True)
        (folder / part / config).write_text(f'{{"part": "{part}"}}')
        if part in WEIGHTED_PARTS:
            (folder / part / "weights.bin").write_bytes(part.encode() * 16)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return folder


def test_stored_runs_keep_their_teacher_hash(tmp_path: Path) -> None:
    """Literal hashes of today's targets: a stored run's targets are found again only while
    the same settings hash the same, so any refactoring of the teachers must leave these."""
    styleid = TeacherOptions(dtype="float16").chosen()
    lsast = TeacherOptions(dtype="float16", kind="lsast").chosen()
    folder = TeacherOptions(model=str(pinned_folder(tmp_path)), dtype="float16").chosen().pinned()
    assert styleid.hash(GPU) == STYLEID_DEFAULT_HASH
    assert lsast.hash(GPU) == LSAST_DEFAULT_HASH
    assert folder.hash(GPU) == PINNED_FOLDER_HASH
