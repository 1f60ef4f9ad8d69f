"""Real-weight loading, offline: a random-weight SD-1.x folder in the Hub's own layout goes
through the same `from_pretrained` calls as SD 1.5, as a folder and as a Hub id read from a
prepared Hugging Face cache (`HF_HOME`, `HF_HUB_OFFLINE=1`), as on an air-gapped cluster; the
same weights written as one LDM-layout checkpoint go through diffusers' `from_single_file`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTokenizer

from common.errors import UserError
from common.storage import Storage
from jobs import generate, learn_style
from jobs.stylize import main as stylize_main
from teacher_workers.lsast import learning
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.generator import generator_from_bytes, new_generator
from teacher_workers.lsast.learn_config import LearnConfig
from teacher_workers.lsast.prompts import INIT_TOKEN, PLACEHOLDER_TOKEN
from teacher_workers.model_source import DEFAULT_MODEL_ID
from teacher_workers.models import load_teacher
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.sizing import auto_tile
from tests.support.cli import run_job
from tests.support.generation_helpers import FAST_TEACHER, check_exactly_once, write_inputs
from tests.support.ldm_checkpoint import write_ldm_checkpoint
from tests.support.sd_folder import clip_vocabulary, hub_cache, write_sd_folder

REPO_ID = "test-org/tiny-sd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAST = ["--resolution", "64", "--steps", "2", "--batch-size", "2"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return write_sd_folder(tmp_path_factory.mktemp("models") / "sd15")


@pytest.fixture(scope="module")
def hf_home(ray_hf_home, sd_folder) -> Path:
    """A Hugging Face cache holding REPO_ID at COMMIT: the one Ray workers read (`ray_cluster`)."""
    hub_cache(ray_hf_home, REPO_ID, sd_folder, COMMIT)
    return ray_hf_home


def read_hub_ids_from(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """This process reads Hub ids from `home` only, as with HF_HOME and HF_HUB_OFFLINE=1."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


@pytest.fixture
def offline_cache(monkeypatch, hf_home) -> Path:
    return read_hub_ids_from(monkeypatch, hf_home)


@pytest.fixture(scope="module")
def single_file(tmp_path_factory, sd_folder) -> Path:
    """`sd_folder`'s UNet, VAE and text encoder as one checkpoint in the original LDM layout."""
    path = tmp_path_factory.mktemp("single-file") / "tiny-sd.safetensors"
    return write_ldm_checkpoint(sd_folder, path)


@pytest.fixture(scope="module")
def sd_configs(tmp_path_factory, sd_folder) -> Path:
    """`sd_folder` without its weights: all that a single file takes from its config."""
    folder = tmp_path_factory.mktemp("configs") / "sd15"
    return shutil.copytree(sd_folder, folder, ignore=shutil.ignore_patterns("*.safetensors"))


@pytest.fixture
def sd15_cache(monkeypatch, tmp_path, sd_configs) -> Path:
    """An offline cache holding SD 1.5's id (the default config of a single file) at COMMIT,
    with `sd_configs` as its snapshot: configs and tokenizer, no weights."""
    hub_cache(tmp_path / "hf-home", DEFAULT_MODEL_ID, sd_configs, COMMIT)
    return read_hub_ids_from(monkeypatch, tmp_path / "hf-home")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    paths = [folder / "content.png", folder / "style.png"]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(path)
    return ["--content", str(paths[0]), "--style", str(paths[1])]


def stylize(pictures: list[str], out: Path, model: str, hf_home: Path) -> object:
    """`python -m jobs.stylize` offline, with `hf_home` as the only source of Hub ids."""
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    return run_job("stylize", *pictures, "--out", str(out), "--model", model, *FAST, env=env)


def test_the_saved_folder_loads_its_own_weights_and_stylizes(sd_folder, pictures, tmp_path):
    teacher = load_teacher(str(sd_folder))
    saved = load_file(sd_folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert teacher.unet.config.cross_attention_dim == 32
    assert all(torch.equal(teacher.unet.state_dict()[k], v) for k, v in saved.items())
    assert teacher.scheduler_config["_class_name"] == "PNDMScheduler"  # SD 1.5's, as shipped
    out = tmp_path / "out.png"
    assert stylize_main([*pictures, "--out", str(out), "--model", str(sd_folder), *FAST]) == 0
    with Image.open(out) as image:
        assert image.size == (64, 64)


def test_the_empty_prompt_embedding_is_the_text_encoders_output(sd_folder):
    tokenizer = CLIPTokenizer.from_pretrained(sd_folder, subfolder="tokenizer")
    encoder = CLIPTextModel.from_pretrained(sd_folder, subfolder="text_encoder")
    ids = tokenizer(
        "", padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    start_end = [tokenizer.bos_token_id, tokenizer.eos_token_id]
    assert ids.shape == (1, 77) and ids[0, :2].tolist() == start_end  # then padding
    with torch.no_grad():
        expected = encoder(ids)[0]
    assert torch.equal(load_teacher(str(sd_folder)).prompt_embeds, expected)


@pytest.mark.parametrize("revision", [[], ["--revision", COMMIT]], ids=["main", "pinned"])
def test_a_hub_id_runs_from_an_offline_cache(hf_home, pictures, tmp_path, revision):
    """As typed by a user (main), and as actors load it once the driver pinned the commit."""
    out = tmp_path / "out.png"
    result = stylize([*pictures, *revision], out, REPO_ID, hf_home)
    assert result.returncode == 0, result.stderr
    assert out.is_file()


def test_a_hub_id_pins_to_its_cached_commit(offline_cache):
    pinned = TeacherOptions(model=REPO_ID).pinned()
    assert (pinned.model, pinned.revision, pinned.digest) == (REPO_ID, COMMIT, None)
    assert pinned.hash(torch.device("cpu")) != TeacherOptions(model=REPO_ID).hash(
        torch.device("cpu")
    )


def test_an_uncached_hub_id_offline_is_one_clear_line(offline_cache):
    with pytest.raises(UserError) as error:
        TeacherOptions(model="test-org/not-cached").pinned()
    message = str(error.value)
    assert message.startswith("cannot find model 'test-org/not-cached' (HF_HUB_OFFLINE is set")
    assert str(offline_cache / "hub") in message and "\n" not in message


def test_a_cached_hub_id_missing_a_part_fails_before_any_work(offline_cache, sd_folder):
    snapshot = hub_cache(offline_cache, "test-org/partial", sd_folder, "b" * 40)
    shutil.rmtree(snapshot / "text_encoder")
    with pytest.raises(UserError, match=r"'test-org/partial' in the Hugging Face cache .*: no "):
        TeacherOptions(model="test-org/partial").pinned()


def truncate_unet(folder: Path) -> None:
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda folder: shutil.rmtree(folder / "unet"), "no unet/ (a Stable Diffusion 1.x"),
        (
            truncate_unet,
            "unet/diffusion_pytorch_model.safetensors is damaged or not a safetensors file",
        ),
    ],
    ids=["missing-unet", "truncated-weights"],
)
def test_a_broken_folder_is_one_clear_line(sd_folder, pictures, tmp_path, damage, problem):
    """The line `error: ...` that jobs.stylize and jobs.generate (before Ray starts) end with."""
    broken = tmp_path / "broken"
    shutil.copytree(sd_folder, broken)
    damage(broken)
    out = tmp_path / "out.png"
    for run in (
        lambda: stylize_main([*pictures, "--out", str(out), "--model", str(broken), *FAST]),
        lambda: TeacherOptions(model=str(broken)).pinned(),
    ):
        with pytest.raises(UserError) as error:
            run()
        assert str(error.value).startswith(f"model folder {broken}: {problem}")
        assert "\n" not in str(error.value)
    assert not out.exists()


def test_the_teacher_hash_follows_a_folders_weights_not_its_place(sd_folder, tmp_path):
    moved = shutil.copytree(sd_folder, tmp_path / "elsewhere")
    other = write_sd_folder(tmp_path / "other", seed=1)
    cpu = torch.device("cpu")
    pinned = TeacherOptions(model=str(sd_folder)).pinned()
    assert pinned.model == str(sd_folder.resolve()) and len(pinned.digest) == 64
    assert TeacherOptions(model=str(moved)).pinned().hash(cpu) == pinned.hash(cpu)
    assert TeacherOptions(model=str(other)).pinned().hash(cpu) != pinned.hash(cpu)


def test_generate_on_ray_runs_a_model_folder_given_by_a_relative_path(
    ray_cluster, sd_folder, tmp_path, monkeypatch
):
    """The driver pins the folder to an absolute path (actors do not share its working
    directory) and names the targets by the folder's digest."""
    contents, styles = write_inputs(tmp_path, 2, 1)
    monkeypatch.chdir(sd_folder.parent)
    args = ["--content", str(contents), "--styles", str(styles), "--out", str(tmp_path / "run")]
    teacher = ["--model", sd_folder.name, "--device", "cpu", *FAST_TEACHER, "--tile", "2x1"]
    assert generate.main([*args, *teacher]) == 0
    lines = check_exactly_once(Storage(str(tmp_path / "run")), 2)
    styleid = StyleIDConfig(steps=3, resolution=64)  # FAST_TEACHER's
    pinned = TeacherOptions(str(sd_folder), dtype="float32", styleid=styleid).pinned()
    assert {line.teacher_hash for line in lines} == {pinned.hash(torch.device("cpu"))}


def test_lsast_prompt_ids_come_from_the_models_own_tokenizer(sd_folder):
    """The folder's tokenizer has CLIP's vocabulary layout, so the ids are the authors'."""
    assert clip_vocabulary()[PLACEHOLDER_TOKEN] == "*</w>" and clip_vocabulary()[320] == "a</w>"
    teacher = load_teacher(str(sd_folder), text_encoder=True)
    tokens = teacher.prompt_tokens
    assert (tokens.placeholder_id, tokens.init_id) == (PLACEHOLDER_TOKEN, INIT_TOKEN)
    assert tokens.placeholder[0, 1] == PLACEHOLDER_TOKEN
    table = teacher.text_encoder.get_input_embeddings().weight
    assert torch.equal(new_generator(teacher).initial_embeddings[0], table[INIT_TOKEN])


@pytest.mark.parametrize(
    ("token", "problem"),
    [("*</w>", "has no token '*' (the style placeholder)"), ("a</w>", "has no token 'a'")],
)
def test_a_tokenizer_without_lsasts_tokens_is_one_clear_line(sd_folder, tmp_path, token, problem):
    broken = shutil.copytree(sd_folder, tmp_path / "broken")
    vocab_file = broken / "tokenizer" / "vocab.json"
    vocab = json.loads(vocab_file.read_text())
    del vocab[token]
    vocab_file.write_text(json.dumps(vocab))
    assert load_teacher(str(broken)).text_encoder is None  # StyleID does not need them
    with pytest.raises(UserError) as error:
        load_teacher(str(broken), text_encoder=True)
    message = str(error.value)
    assert message.startswith(f"model folder {broken}: its tokenizer {problem}")
    assert "\n" not in message


def test_learn_style_on_ray_learns_from_a_cached_hub_id(
    ray_cluster, sd_folder, hf_home, pictures, monkeypatch, tmp_path
):
    """The driver pins the Hub id to its cached commit; the Ray worker loads it (offline, from
    the cluster's HF_HOME) and starts the generator from the embedding of `a` in the model's own
    text encoder. A model folder is pinned to its absolute path (Ray actors load one in
    `test_generate_on_ray_runs_a_model_folder_given_by_a_relative_path`)."""
    read_hub_ids_from(monkeypatch, hf_home)
    out = tmp_path / "learned"
    folder = learn_style.pinned(LearnConfig(styles=(), out=str(out), model=str(sd_folder)))
    assert (folder.model, folder.revision) == (str(sd_folder.resolve()), None)
    style = pictures[pictures.index("--style") + 1]
    args = ["--styles", style, "--out", str(out), "--model", REPO_ID, "--resolution", "64"]
    assert learn_style.main([*args, "--steps", "2", "--lr", "1e-3"]) == 0
    latest = json.loads((out / learning.LATEST).read_text())
    assert latest["step"] == 2
    assert (latest["settings"]["model"], latest["settings"]["revision"]) == (REPO_ID, COMMIT)
    assert (out / "checkpoints" / "step-00000002" / "generator.safetensors").is_file()
    learned = generator_from_bytes((out / learning.PROMPTS).read_bytes(), "prompts")
    encoder = CLIPTextModel.from_pretrained(sd_folder, subfolder="text_encoder")
    table = encoder.get_input_embeddings().weight
    assert torch.equal(learned.initial_embeddings[0], table[INIT_TOKEN])
    assert learned().shape == (30, 32)


def test_a_single_file_loads_the_weights_of_the_folder_it_came_from(
    sd_folder, single_file, sd_configs
):
    """Through diffusers' `from_single_file`, with a config folder that holds no weights."""
    expected = load_teacher(str(sd_folder))
    teacher = load_teacher(str(single_file), config=str(sd_configs))
    for part in ("unet", "vae"):
        weights = getattr(teacher, part).state_dict()
        saved = getattr(expected, part).state_dict()
        assert weights.keys() == saved.keys()
        assert all(torch.equal(weights[k], saved[k]) for k in saved), part
    assert torch.equal(teacher.prompt_embeds, expected.prompt_embeds)  # the text encoder's
    assert torch.equal(teacher.alphas_cumprod, expected.alphas_cumprod)
    # SD 1.5's scheduler file (PNDM), with the defaults diffusers filled in
    assert expected.scheduler_config.items() <= teacher.scheduler_config.items()


def test_stylize_runs_a_single_file_offline_with_sd15s_cached_config(
    sd15_cache, single_file, pictures, tmp_path
):
    """No --model-config: SD 1.5's configs come from the offline cache (the weights are those
    of the folder, as the test above shows)."""
    out = tmp_path / "out.png"
    assert stylize_main([*pictures, "--out", str(out), "--model", str(single_file), *FAST]) == 0
    with Image.open(out) as image:
        assert image.size == (64, 64)


def test_a_single_file_pins_to_its_bytes_and_configs(
    sd15_cache, sd_folder, single_file, sd_configs, tmp_path
):
    cpu = torch.device("cpu")
    pinned = TeacherOptions(model=str(single_file), model_config=str(sd_configs)).pinned()
    assert (pinned.model, pinned.model_config) == (str(single_file), str(sd_configs))
    assert pinned.revision is None and len(pinned.digest) == 64
    # SD 1.5's id in the cache holds the same configs: the same targets, at its pinned commit
    from_hub = TeacherOptions(model=str(single_file)).pinned()
    assert (from_hub.model_config, from_hub.revision) == (DEFAULT_MODEL_ID, COMMIT)
    assert from_hub.hash(cpu) == pinned.hash(cpu)
    assert torch.equal(
        from_hub.build().teacher.prompt_embeds, load_teacher(str(sd_folder)).prompt_embeds
    )
    renamed = shutil.copy(single_file, tmp_path / "renamed.safetensors")
    assert TeacherOptions(str(renamed)).pinned().hash(cpu) == pinned.hash(cpu)
    weights = load_file(single_file)
    weights["model.diffusion_model.out.2.bias"] += 1
    save_file(weights, tmp_path / "tuned.safetensors")
    tuned = TeacherOptions(str(tmp_path / "tuned.safetensors")).pinned()
    assert tuned.hash(cpu) != pinned.hash(cpu)
    assert TeacherOptions(str(sd_folder)).pinned().hash(cpu) != pinned.hash(cpu)
    # tiles are sized from the config's shapes, not SD 1.5's (the fallback when none is read)
    assert (
        auto_tile(pinned, 1)
        == auto_tile(TeacherOptions(str(sd_folder)), 1)
        != auto_tile(TeacherOptions("sd15-random"), 1)
    )


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (
            lambda path, file, folder: path.write_bytes(file.read_bytes()[: 1 << 12]),
            "is damaged or not a safetensors file",
        ),
        (
            lambda path, file, folder: shutil.copy(
                folder / "unet" / "diffusion_pytorch_model.safetensors", path
            ),
            "is not a Stable Diffusion 1.x checkpoint in the original LDM layout: "
            "no model.diffusion_model.* tensors (the UNet)",
        ),
        (lambda path, file, folder: None, ": no such file"),
    ],
    ids=["truncated", "diffusers-unet", "missing"],
)
def test_a_broken_single_file_is_one_clear_line(
    sd15_cache, sd_folder, single_file, pictures, tmp_path, damage, problem
):
    path = tmp_path / "broken.safetensors"
    damage(path, single_file, sd_folder)
    out = tmp_path / "out.png"
    for run in (
        lambda: stylize_main([*pictures, "--out", str(out), "--model", str(path), *FAST]),
        lambda: TeacherOptions(model=str(path)).pinned(),
    ):
        with pytest.raises(UserError) as error:
            run()
        assert str(error.value).startswith(f"model file {path}")
        assert problem in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_a_single_file_without_a_cached_config_is_one_clear_line(offline_cache, single_file):
    with pytest.raises(UserError) as error:
        TeacherOptions(model=str(single_file)).pinned()
    message = str(error.value)
    assert message.startswith(f"cannot find the config {DEFAULT_MODEL_ID!r} of the single-file")
    assert "--model-config DIR" in message and "\n" not in message
    with pytest.raises(UserError, match="--model-config applies to single-file checkpoints"):
        TeacherOptions(model=REPO_ID, model_config=str(single_file.parent))


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny ControlNet folders (save_pretrained) that differ in one zero convolution."""
    from diffusers import ControlNetModel

    from teacher_workers.lsast.control import TINY_HINT_CHANNELS

    unet = load_teacher("tiny").unet
    folders = tmp_path_factory.mktemp("controlnets")
    paths = (folders / "canny-a", folders / "canny-b")
    for k, path in enumerate(paths):
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=TINY_HINT_CHANNELS
        )
        torch.nn.init.constant_(controlnet.controlnet_mid_block.weight, 0.01 * k)
        controlnet.save_pretrained(path)
    return paths


def lsast_hash(controlnet: str, revision: str | None = None) -> str:
    """The teacher hash of pinned LSAST targets made with `controlnet` on the tiny model."""
    flags = LSASTConfig(controlnet=controlnet, controlnet_revision=revision)
    options = TeacherOptions(kind="lsast", lsast=flags).chosen().pinned()
    return options.hash(torch.device("cpu"))


def test_the_lsast_hash_follows_a_controlnet_folders_weights_not_its_place(controlnets, tmp_path):
    first, other = controlnets
    renamed = shutil.copytree(first, tmp_path / "renamed")
    pinned = TeacherOptions(kind="lsast", lsast=LSASTConfig(controlnet=str(first)))
    pinned = pinned.chosen().pinned().lsast
    assert pinned.controlnet == str(first.resolve()) and len(pinned.controlnet_digest) == 64
    assert lsast_hash(str(renamed)) == lsast_hash(str(first)) != lsast_hash(str(other))
    assert lsast_hash(str(first)) != lsast_hash("tiny")
    (renamed / "config.json").unlink()
    with pytest.raises(UserError, match=r"^ControlNet folder .*: no config.json \(a diffusers"):
        lsast_hash(str(renamed))


def test_a_hub_controlnet_pins_its_revision_to_the_commit(monkeypatch, tmp_path, controlnets):
    """main and another revision of one Hub id: each pinned to its commit, hashed apart."""
    home = read_hub_ids_from(monkeypatch, tmp_path / "hf-home")
    repo_id, other_commit = "test-org/tiny-controlnet", "b" * 40
    hub_cache(home, repo_id, controlnets[0], COMMIT)
    snapshot = hub_cache(home, repo_id, controlnets[1], other_commit)
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    (snapshot.parents[1] / "refs" / "v2").write_text(other_commit)
    flags = LSASTConfig(controlnet=repo_id, controlnet_revision="v2")
    pinned = TeacherOptions(kind="lsast", lsast=flags).chosen().pinned().lsast
    assert (pinned.controlnet, pinned.controlnet_revision) == (repo_id, other_commit)
    assert lsast_hash(repo_id) != lsast_hash(repo_id, "v2")
    assert lsast_hash(repo_id, COMMIT) == lsast_hash(repo_id)
    with pytest.raises(UserError, match=r"^cannot find ControlNet 'test-org/none' "):
        lsast_hash("test-org/none")
