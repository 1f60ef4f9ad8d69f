"""The teachers by name: a new teacher is its folder and one line here."""

from __future__ import annotations

from collections.abc import Iterable

from common.errors import UserError
from common.manifest import ManifestLine
from teacher_workers.lsast.teacher import LSASTTeacher
from teacher_workers.student_teacher.teacher import StudentTeacher
from teacher_workers.styleid.teacher import StyleIDTeacher
from teacher_workers.teacher import Teacher

TEACHERS: dict[str, Teacher] = {
    t.name: t for t in (StyleIDTeacher(), LSASTTeacher(), StudentTeacher())
}


def get_teacher(name: str) -> Teacher:
    """The teacher `--teacher name` runs (`UserError` for an unknown name)."""
    if name not in TEACHERS:
        raise UserError(f"--teacher must be one of {', '.join(TEACHERS)}, got {name!r}")
    return TEACHERS[name]


def learned_styles(lines: Iterable[ManifestLine]) -> list[str]:
    """The learned styles (prompt files) the lines name as styles, sorted: those of pairs made
    by a teacher that takes learned styles."""
    return sorted(
        {line.style for line in lines if get_teacher(line.teacher).style_input == "learned"}
    )
