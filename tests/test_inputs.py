"""Expanding input folders: every format Pillow reads is taken, the rest is named in one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from common.errors import UserError
from common.inputs import check_golden_leak, expand_images
from common.storage import Storage


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


def test_relative_inputs_inside_a_ray_jobs_working_dir_are_refused(tmp_path, monkeypatch):
    """Under `ray job submit --working-dir .` the driver runs in Ray's temporary copy of the
    upload (`_ray_pkg_<hash>`): a relative path would be recorded as a path into it."""
    package = tmp_path / "working_dir_files" / "_ray_pkg_5f2c0a9e1b7d4c33"
    (package / "photos").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(package / "photos" / "a.png")
    monkeypatch.chdir(package)
    with pytest.raises(UserError) as error:
        expand_images(["photos"], {}, "content")
    assert str(error.value).startswith("relative path 'photos' would be read from this Ray job's")
    assert "absolute path that every node can read, or an object-store URL" in str(error.value)
    with pytest.raises(UserError, match="relative path 'runs/r1'"):
        Storage("runs/r1")
    assert expand_images([str(package / "photos")], {}, "content") == [
        str(package / "photos" / "a.png")
    ]


def test_relative_inputs_elsewhere_are_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    monkeypatch.chdir(tmp_path)
    assert expand_images(["photos"], {}, "content") == [str(tmp_path / "photos" / "a.png")]
