"""Small inputs and checks shared by the generation tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.manifest import ManifestLine
from common.storage import Storage

FAST_TEACHER = ["--resolution", "64", "--steps", "3", "--batch-size", "4"]


def write_inputs(
    folder: Path, n_content: int, n_style: int, corrupt: bool = False
) -> tuple[Path, Path]:
    """Random small images (distinct bytes, so distinct ids) in content/ and styles/."""
    rng = np.random.default_rng(len(str(folder)))
    contents, styles = folder / "content", folder / "styles"
    contents.mkdir(parents=True)
    styles.mkdir(parents=True)
    for i in range(n_content):
        Image.fromarray(rng.integers(0, 255, (48 + i, 80, 3), dtype=np.uint8)).save(
            contents / f"c{i}.png"
        )
    for i in range(n_style):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            styles / f"s{i}.jpg"
        )
    if corrupt:
        (contents / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return contents, styles


def raw_manifest_lines(storage: Storage) -> list[ManifestLine]:
    """Every line of every manifest part, as stored: nothing merged or de-duplicated."""
    return [
        ManifestLine.from_json(text)
        for key in storage.list("manifests")
        for text in storage.read_bytes(key).decode().splitlines()
        if text.strip()
    ]


def check_exactly_once(storage: Storage, n_pairs: int) -> list[ManifestLine]:
    """Every planned pair has exactly one manifest line, and the lines list exactly the stored
    targets (the inputs are distinct images, so each pair has a target of its own)."""
    lines = raw_manifest_lines(storage)
    targets = [k for k in storage.list("targets") if k.endswith(".png")]
    assert len(lines) == n_pairs
    assert len({(line.content, line.style) for line in lines}) == n_pairs
    assert sorted(line.target for line in lines) == sorted(targets)
    assert not [k for k in storage.list("") if ".tmp-" in k]
    return lines


def target_times(root: Path) -> dict[str, int]:
    """Modification time of every stored target under a local root: a target written again
    (even with the same bytes) gets a new one."""
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.glob("targets/**/*.png")
    }


def check_unchanged(root: Path, before: dict[str, int]) -> None:
    """Targets stored earlier are still there and were not written again."""
    after = target_times(root)
    assert {key: after.get(key) for key in before} == before


def run_json(storage: Storage) -> dict:
    return json.loads(storage.read_bytes("run.json"))


def write_prompt_files(
    folder: Path, n: int, prefix: str = "style", images: Sequence[str] = ()
) -> list[Path]:
    """Learned-style prompt files `<prefix><k>.safetensors` of the tiny teacher (random
    generators, seeds 0..n-1), as learn_style writes them: each records `images` as the style
    images it was learned from."""
    from teacher_workers.lsast.generator import generator_bytes, new_generator
    from teacher_workers.models import load_teacher

    teacher = load_teacher("tiny", text_encoder=True)
    folder.mkdir()
    paths = [folder / f"{prefix}{k}.safetensors" for k in range(n)]
    for k, path in enumerate(paths):
        path.write_bytes(generator_bytes(new_generator(teacher, seed=k), images))
    return paths
