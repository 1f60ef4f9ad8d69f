"""The packages' dependencies point one way (SPEC section 2):
jobs -> evaluation -> teacher_workers -> student -> common; nothing imports `jobs` or `tests`
(benchmarks included), so a teacher may run a student network and `student/` never reaches
a teacher. Read from the source with `ast`, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("common", "student", "teacher_workers", "evaluation", "serving", "jobs")  # import leftward


def imported_packages(path: Path) -> set[str]:
    """The top-level names a source file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("package", ORDER)
def test_a_package_imports_only_the_packages_below_it(package: str) -> None:
    allowed = set(ORDER[: ORDER.index(package) + 1])
    upward = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources(package)
        for name in imported_packages(path) & (set(ORDER) | {"tests", "benchmarks"})
        if name not in allowed
    }
    assert not upward, sorted(upward)


def test_benchmarks_import_no_test_module() -> None:
    offending = [
        str(p.relative_to(ROOT)) for p in sources("benchmarks") if "tests" in imported_packages(p)
    ]
    assert not offending
