"""`jobs.prepare_models` without the internet: its plan, its checks and its upload step."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from common.errors import UserError
from jobs import prepare_models
from jobs.prepare_models import CONTROLNET_FILES, SD_FILES, main, upload
from student.microast_weights import AUTHORS_URL, FILES, SHIPPED
from teacher_workers.model_source import DEFAULT_MODEL_ID

VGG_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
RESNET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
CONTROLNET = "lllyasviel/control_v11p_sd15_canny"


def test_dry_run_plans_every_model_a_run_needs_and_writes_nothing(tmp_path, capsys):
    """SD, LSAST's ControlNet, the losses' and encoders' weights and the metrics' networks."""
    out = tmp_path / "models"
    assert main(["--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == [
        f"{DEFAULT_MODEL_ID} (revision main): {', '.join(SD_FILES)} -> {out}/huggingface/hub",
        f"{CONTROLNET} (revision main): {', '.join(CONTROLNET_FILES)} -> {out}/huggingface/hub",
        f"{VGG_URL} -> {out}/torch/hub/checkpoints/vgg19-dcbb9e9d.pth",
        f"{RESNET_URL} -> {out}/torch/hub/checkpoints/resnet50-0676ba61.pth",
        f"{ALEXNET_URL} -> {out}/torch/hub/checkpoints/alexnet-owt-7be5be79.pth",
    ]
    assert lines[5].endswith(f"/{INCEPTION_FILE} -> {out}/torch/hub/checkpoints/{INCEPTION_FILE}")
    assert lines[6].startswith(f"{AUTHORS_URL}/{{content_encoder_iter_160000.pth.tar,")
    assert lines[6].endswith(f" -> {out}/microast")
    assert len(lines) == 7
    assert not out.exists()


def test_the_controlnet_and_the_metrics_weights_can_be_fetched_alone(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--dry-run"]
    assert main([*args, "--controlnet", "org/canny", "--metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("org/canny (revision main): config.json, ")
    assert lines[1].startswith(ALEXNET_URL) and INCEPTION_FILE in lines[2]
    assert len(lines) == 3


def test_naming_some_models_fetches_only_those(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--dry-run", "--sd", "org/model", "--revision", "v2"]
    assert main([*args, "--resnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("org/model (revision v2): model_index.json, unet/config.json")
    assert lines[1].startswith(RESNET_URL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vgg", "--revision", "v2"], "--revision applies to the --sd model"),
        (["--sd", "a/b/c"], "--sd 'a/b/c' is not a Hugging Face id"),
        (["--controlnet", "a/b/c"], "--controlnet 'a/b/c' is not a Hugging Face id"),
    ],
)
def test_bad_options_are_one_clear_line(tmp_path, args, message):
    with pytest.raises(UserError, match=message):
        main(["--out", str(tmp_path), "--dry-run", *args])


def test_an_unusable_output_url_fails_before_any_download(monkeypatch):
    def fail(*args: object) -> None:
        raise AssertionError("nothing may be fetched")

    monkeypatch.setattr(prepare_models, "prepare", fail)
    with pytest.raises(UserError, match="cannot open 'nosuch://bucket/models'"):
        main(["--out", "nosuch://bucket/models"])


def test_upload_copies_the_staged_cache_with_links_resolved(tmp_path):
    """The Hub cache links snapshot files to blobs; the store gets their bytes."""
    repo = tmp_path / "huggingface" / "hub" / "models--org--model"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "0abc").write_bytes(b"unet weights")
    snapshot = repo / "snapshots" / ("c" * 40) / "unet"
    snapshot.mkdir(parents=True)
    (snapshot / "diffusion_pytorch_model.safetensors").symlink_to(repo / "blobs" / "0abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    (tmp_path / "huggingface" / "hub" / ".locks").mkdir()
    (tmp_path / "huggingface" / "hub" / ".locks" / "x.lock").write_text("")
    url = f"memory://models-{uuid.uuid4().hex}"
    assert upload(tmp_path, url, {}) == 3
    fs = fsspec.filesystem("memory")
    stored = {Path(p).relative_to(url.removeprefix("memory:/")) for p in fs.find(url)}
    key = "huggingface/hub/models--org--model"
    assert {str(p) for p in stored} == {
        f"{key}/blobs/0abc",
        f"{key}/refs/main",
        f"{key}/snapshots/{'c' * 40}/unet/diffusion_pytorch_model.safetensors",
    }
    linked = f"{url}/{key}/snapshots/{'c' * 40}/unet/diffusion_pytorch_model.safetensors"
    assert fs.cat_file(linked) == b"unet weights"


def test_microast_weights_are_fetched_from_a_source_and_checked(tmp_path, capsys):
    """Any fsspec folder stands in for the authors' repository (no network here); a source
    whose files do not fit fails with one line naming the file."""
    source = f"memory://authors-{uuid.uuid4().hex}"
    memory = fsspec.filesystem("memory")
    for name in FILES.values():
        memory.pipe(f"{source}/{name}", (SHIPPED / name).read_bytes())
    out = tmp_path / "models"
    assert main(["--out", str(out), "--microast", "--microast-source", source]) == 0
    assert f"--arch microast --init {out / 'microast'}" in capsys.readouterr().out
    for name in [*FILES.values(), "LICENSE"]:
        assert (out / "microast" / name).read_bytes() == (SHIPPED / name).read_bytes()

    memory.pipe(f"{source}/{FILES['decoder']}", (SHIPPED / FILES["modulator"]).read_bytes())
    with pytest.raises(UserError, match=r"decoder_iter_160000\.pth\.tar does not fit"):
        main(["--out", str(tmp_path / "other"), "--microast", "--microast-source", source])
