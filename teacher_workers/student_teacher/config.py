"""The student teacher's configuration: which weights (`--teacher-student`), pinned by the
digest of their bytes, and the shared flags folded in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

import tyro

from common.errors import UserError
from common.storage import Storage, absolute_url

# Weights by name: the shipped MicroAST authors' files, which no checkpoint of ours holds.
MICROAST_AUTHORS = "microast-authors"
NAMED = (MICROAST_AUTHORS,)
# Bumped whenever a target changes for the same weights (the engine, or how inputs are read).
STUDENT_ENGINE_VERSION = 1


@dataclass(frozen=True)
class StudentTeacherConfig:
    """The trained student that teaches with --teacher student."""

    # `resolution` and `batch_size` come from the shared flags, `digest` from pinning

    student: Annotated[str, tyro.conf.arg(name="teacher-student", metavar="NAME|URL")] = (
        MICROAST_AUTHORS
    )
    """microast-authors (the shipped MicroAST authors' weights), or a checkpoint or run folder"""
    resolution: tyro.conf.Suppress[int] = 512
    batch_size: tyro.conf.Suppress[int] = 8  # pairs per forward pass
    digest: tyro.conf.Suppress[str | None] = None  # sha256 of the weights' bytes, set by pinning

    def __post_init__(self) -> None:
        if not self.student:
            raise UserError("--teacher-student must name weights or a checkpoint")

    @property
    def named(self) -> bool:
        """The weights are one of `NAMED`, not a checkpoint."""
        return self.student in NAMED


def weights_digest(config: StudentTeacherConfig) -> str:
    """sha256 over the bytes of every file the weights are read from (the shipped files, or a
    checkpoint's weights and config), so other weights under the same name hash differently."""
    from student.checkpoint import CONFIG_FILE, MODEL_FILE
    from student.microast_weights import FILES, SHIPPED

    digest = hashlib.sha256()
    if config.named:
        for name in FILES.values():
            digest.update((SHIPPED / name).read_bytes())
        return digest.hexdigest()
    storage = Storage(config.student)
    for name in (CONFIG_FILE, MODEL_FILE):
        try:
            digest.update(storage.read_bytes(name))
        except OSError as exc:
            raise UserError(f"cannot read {storage.url(name)}: {exc}") from None
    return digest.hexdigest()


def pin_student(config: StudentTeacherConfig) -> tuple[str, str]:
    """(checkpoint URL, digest) of the weights `config` names: a run folder resolved to its best
    checkpoint and a local path made absolute, so actors elsewhere load exactly these bytes;
    a name stays a name."""
    from student.checkpoint import resolve_checkpoint

    if config.named:
        return config.student, weights_digest(config)
    url = absolute_url(resolve_checkpoint(config.student))
    return url, weights_digest(StudentTeacherConfig(student=url))


def check_digest(config: StudentTeacherConfig) -> None:
    """The weights still have the bytes they were pinned with (`UserError` if they changed)."""
    if config.digest and weights_digest(config) != config.digest:
        raise UserError(
            f"--teacher-student {config.student}: its weights changed since the run pinned them"
        )
