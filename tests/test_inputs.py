"""Expanding input folders: every format Pillow reads is taken, the rest is named in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from common.errors import UserError
from common.inputs import check_golden_leak, expand_images


def test_a_folder_gives_every_pillow_format_and_says_what_it_skipped(tmp_path, caplog):
    images = ["a.png", "b.gif", "c.tif", "d.bmp", "sub/e.JPG", "f.webp", "g.ppm"]
    others = ["notes.txt", "data.csv", "sub/model.h5", "clip.mpg", ".DS_Store", ".cache/x.png"]
    for name in [*images, *others]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="common.inputs"):
        found = expand_images([str(tmp_path)], {}, "content")
    assert sorted(Path(url).relative_to(tmp_path).as_posix() for url in found) == sorted(images)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"content input {str(tmp_path)!r}: skipped 6 of 13 files: 4 not an image by suffix "
        "(clip.mpg, data.csv, notes.txt, ...); 2 hidden (.DS_Store, .cache/x.png)"
    ]


def test_a_folder_without_images_says_what_it_holds(tmp_path):
    (tmp_path / "readme.md").write_text("no pictures here")
    with pytest.raises(UserError, match=r"holds no images \(skipped 1 of 1 files: 1 not an image"):
        expand_images([str(tmp_path)], {}, "style")


def test_a_glob_takes_what_it_matches(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.gif")
    assert expand_images([str(tmp_path / "*.gif")], {}, "style") == [str(tmp_path / "a.gif")]


def test_the_golden_leak_check_passes_over_unreadable_inputs(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "golden.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "gone.png").symlink_to("nowhere.png")
    training = [str(tmp_path / name) for name in ("loop.png", "gone.png")]
    check_golden_leak([str(tmp_path / "golden.png")], training, {})  # recorded later, not here
    (tmp_path / "copy.png").write_bytes((tmp_path / "golden.png").read_bytes())
    with pytest.raises(UserError, match=r"copy\.png is a golden image"):
        check_golden_leak([str(tmp_path / "golden.png")], [str(tmp_path / "copy.png")], {})
