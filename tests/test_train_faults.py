"""`jobs.train` when a run cannot go on as planned: missing manifest parts are named, and a
root without manifests says to run generation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from common.manifest import manifest_key
from common.run_info import write_run_info
from common.storage import Storage
from student.dataset import read_splits
from tests.cli import run_job
from tests.synthetic_run import write_synthetic_run
from tests.train_helpers import SIZE


def generated_run(root: Path) -> Storage:
    """The synthetic run (3 parts, 9 pairs) with the run.json `jobs.generate` writes."""
    storage = write_synthetic_run(root, n_content=3, n_style=3, size=SIZE)
    write_run_info(storage, "generate", {}, {}, teacher_hash="t0", pairs=9, tiles=3)
    return storage


def test_a_deleted_manifest_part_is_a_warning_with_the_pairs_it_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = generated_run(tmp_path)
    with caplog.at_level(logging.WARNING):
        read_splits(storage)
    assert not caplog.records  # everything planned is listed
    (tmp_path / manifest_key("t0", "0001")).unlink()
    with caplog.at_level(logging.WARNING):
        splits = read_splits(storage)
    assert (len(splits.train), len(splits.val)) == (2, 1)
    assert [record.getMessage() for record in caplog.records] == [
        f"run.json planned 9 pairs in 3 tiles, {tmp_path}/manifests has 2 parts listing 6: "
        "3 planned pairs have no manifest line (generation unfinished or parts deleted; run "
        "jobs.generate again with the same options to finish it); training on the listed pairs "
        "only"
    ]


@pytest.mark.parametrize("teacher_hash", [None, "t0"])
def test_a_root_without_manifests_says_to_run_generation(
    tmp_path: Path, teacher_hash: str | None
) -> None:
    generated_run(tmp_path)
    for part in (tmp_path / "manifests" / "t0").iterdir():
        part.unlink()
    hash_args = [] if teacher_hash is None else ["--teacher-hash", teacher_hash]
    result = run_job("train", "--data", str(tmp_path), "--name", "n", *hash_args)
    assert result.returncode == 2
    folder = f"{tmp_path}/manifests" + ("" if teacher_hash is None else f"/{teacher_hash}")
    assert result.stderr == (
        f"error: no manifests under {folder}: generation has not run or not finished a tile "
        "yet (run jobs.generate with --out set to this root)\n"
    )
