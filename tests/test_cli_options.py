"""One source for every option: each flag's default in `--help` is its config field's default.

The command lines are generated from the typed configs, so a default written twice (a flag
default beside a field default) cannot drift; this reads what the user sees to prove it.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import tyro
from tyro.constructors import PrimitiveConstructorSpec

from common.cli import parse
from common.errors import UserError
from jobs import (
    evaluate,
    export,
    generate,
    learn_style,
    pipeline,
    prepare_models,
    serve,
    stylize,
)
from student.train_config import TrainConfig
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.options import TeacherOptions

CONFIGS = {
    "jobs.evaluate": evaluate.Args,
    "jobs.export": export.Args,
    "jobs.generate": generate.Args,
    "jobs.pipeline": pipeline.Args,
    "jobs.prepare_models": prepare_models.Args,
    "jobs.serve": serve.Args,
    "jobs.stylize": stylize.Args,
    "jobs.train": TrainConfig,
}


def expected_defaults(config: type, instance: object = None) -> dict[str, str]:
    """`--flag` -> its default as the help shows it, from the dataclass fields (nested configs
    included); flags without a default, hidden or repeatable ones are left out."""
    found = {}
    hints = typing.get_type_hints(config, include_extras=True)
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        marks = typing.get_args(hints[field.name])[1:]
        if tyro.conf.Suppress in marks or tyro.conf.UseAppendAction in marks:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:  # a required flag, or a required group whose other flags have defaults
            kind = typing.get_args(hints[field.name])[0] if marks else hints[field.name]
            found.update(expected_defaults(kind) if dataclasses.is_dataclass(kind) else {})
            continue
        default = getattr(instance, field.name, default)
        if dataclasses.is_dataclass(default):
            found.update(expected_defaults(type(default), default))
            continue
        names = [m.name for m in marks if isinstance(m, tyro.conf._confstruct._ArgConfig)]
        flag = "--" + ((names[0] if names and names[0] else None) or field.name.replace("_", "-"))
        specs = [m for m in marks if isinstance(m, PrimitiveConstructorSpec)]
        # `tuple[Annotated[T, spec], ...]`: each item shown as its spec shows it
        item = (typing.get_args(hints[field.name]) or (None,))[0]
        items = [m for m in typing.get_args(item) if isinstance(m, PrimitiveConstructorSpec)]
        if specs:
            shown = " ".join(specs[0].str_from_instance(default))
        elif isinstance(default, tuple):
            shown = " ".join(
                " ".join(items[0].str_from_instance(v)) if items else str(v) for v in default
            )
        else:
            shown = str(default)
        found[flag] = shown
    return found


@pytest.mark.parametrize("module", sorted(CONFIGS))
def test_every_flag_default_in_help_is_the_config_default(module, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # one column of option groups
    with pytest.raises(SystemExit) as exit_:
        parse(CONFIGS[module], ["--help"], module, None)
    assert exit_.value.code == 0
    shown = {}
    for entry in re.split(r"\n[ │]*(?=--[A-Za-z])", capsys.readouterr().out)[1:]:  # one per flag
        text = ""
        for line in entry.splitlines():  # the flag, then its help wrapped over lines
            text += " " + line.strip(" │")
            if re.search(r"\((default: .*|required|repeatable)\)$", text):
                break
        if default := re.search(r"\(default: (.*)\)$", text):
            shown[text.split()[0].rstrip(",")] = default.group(1)
    expected = expected_defaults(CONFIGS[module])
    assert expected, module
    assert shown == expected


# the flags each command cannot parse without
REQUIRED = {
    "jobs.evaluate": ["--data", "d", "--student", "s"],
    "jobs.export": ["--student", "ckpt", "--onnx", "x.onnx"],
    "jobs.generate": ["--content", "c", "--styles", "s", "--out", "o"],
    "jobs.learn_style": ["--styles", "s", "--out", "o"],
    "jobs.pipeline": [],
    "jobs.prepare_models": [],
    "jobs.serve": ["--student", "s"],
    "jobs.stylize": ["--content", "c", "--style", "s", "--out", "o"],
    "jobs.train": ["--data", "d", "--name", "n"],
}


@pytest.mark.parametrize("module", sorted(REQUIRED))
def test_every_choice_flag_refuses_a_wrong_value_in_one_line(module, monkeypatch, capsys) -> None:
    """Each flag `--help` shows with its choices ({a,b}): a value outside them is one
    `UserError` naming the flag and the choices, not tyro's box."""
    config = {**CONFIGS, "jobs.learn_style": learn_style.Args}[module]
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit):
        parse(config, ["--help"], module, None)
    flags = re.findall(r"(--[a-z-]+) \{([^}]+)\}(?!\|)", capsys.readouterr().out)  # not {None}|STR
    for flag, choices in flags:
        message = f"{flag} 'bogus': expected one of {', '.join(choices.split(','))}"
        with pytest.raises(UserError, match=re.escape(message)):
            parse(config, [*REQUIRED[module], flag, "bogus"], module, None)
    if module in ("jobs.generate", "jobs.train"):
        assert len(flags) >= 2, flags  # e.g. --planner and --teacher, --loss and --precision


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("jobs.export", ["--check-sizes", "64x64", "abc"], "--check-sizes must look like HxW with"),
        (
            "jobs.generate",
            ["--tile", "12"],
            "--tile must look like AxB|auto with integers, got '12'",
        ),
        ("jobs.generate", ["--workers", "0:2"], "--workers values must be >= 1, got '0:2'"),
        ("jobs.generate", ["--workers", "1-2"], "--workers must look like MIN:MAX with integers"),
    ],
)
def test_a_malformed_pair_flag_names_its_own_form(module, argv, message) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        parse(CONFIGS[module], [*REQUIRED[module], *argv], module, "")


def test_every_lsast_flag_reaches_the_lsast_config() -> None:
    """`chosen` gives each LSAST flag to the config field of its name: a flag added to
    `LSASTConfig` is not dropped on the way (it must be added here, or this fails)."""
    flags = {
        "controlnet": ["org/net"],
        "controlnet_revision": ["r1"],
        "strength": ["0.5"],
        "guidance": ["7.5"],
        "control_scale": ["0.8"],
        "canny": ["50", "150"],
        "stage_indexing": ["paper"],
        "prompt_dropout": [],
    }
    shared = {"steps", "resolution", "seed", "batch_size", "controlnet_digest"}
    assert set(flags) == {field.name for field in dataclasses.fields(LSASTConfig)} - shared
    argv = [
        part for name, values in flags.items() for part in (f"--{name}".replace("_", "-"), *values)
    ]
    config = parse(TeacherOptions, ["--teacher", "lsast", *argv], "prog", None).chosen().lsast
    expected = {"controlnet": "org/net", "controlnet_revision": "r1", "strength": 0.5}
    expected |= {"guidance": 7.5, "control_scale": 0.8, "canny": (50, 150)}
    expected |= {"stage_indexing": "paper", "prompt_dropout": True}
    assert {name: getattr(config, name) for name in expected} == expected
