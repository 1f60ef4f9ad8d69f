"""The storage layout of a run (SPEC section 4) and its manifest and failure records.

Readers trust only manifest lines: a line is written after its target exists, so a target
without a line is an unfinished pair and a line always points at a complete PNG.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from common.errors import UserError
from common.storage import Storage

SPLITS = ("train", "val", "golden")


def target_key(teacher_hash: str, style_id: str, content_id: str) -> str:
    return f"targets/{teacher_hash}/{style_id}/{content_id}.png"


def manifest_key(teacher_hash: str, tile_id: str) -> str:
    return f"manifests/{teacher_hash}/part-{tile_id}.jsonl"


def failure_key(teacher_hash: str, tile_id: str) -> str:
    return f"failures/{teacher_hash}/part-{tile_id}.jsonl"


@dataclass(frozen=True)
class ManifestLine:
    """One finished (content, style) -> target pair; `target` is a key under the run root."""

    content: str
    style: str
    content_id: str
    style_id: str
    target: str
    split: str
    teacher_hash: str
    sha256: str
    seconds: float | None  # teacher time per pair; None when found from an earlier attempt

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ManifestLine:
        """Parse one line; missing or unknown fields raise `ValueError`."""
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"manifest line fields {sorted(data)} != {sorted(names)}")
        return cls(**data)


@dataclass(frozen=True)
class FailureLine:
    """One input that could not be used, and why (the job went on without it)."""

    url: str
    role: str  # "content" | "style"
    reason: str
    teacher_hash: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def write_lines(storage: Storage, key: str, lines: list[ManifestLine] | list[FailureLine]) -> None:
    """Write a whole part file in one PUT (parts are per tile, so no appends are needed)."""
    storage.write_bytes(key, "".join(line.to_json() + "\n" for line in lines).encode())


def teacher_hashes(storage: Storage) -> list[str]:
    """Teacher hashes that have manifests under this root."""
    return sorted({key.split("/")[1] for key in storage.list("manifests") if key.count("/") >= 2})


def no_manifests(storage: Storage, prefix: str) -> str:
    """The message for a root without manifest parts: a teacher hash would not help there."""
    return (
        f"no manifests under {storage.url(prefix)}: generation has not run or not finished a "
        "tile yet (run jobs.generate with --out set to this root)"
    )


def read_manifest(
    storage: Storage, teacher_hash: str | None = None, splits: tuple[str, ...] = SPLITS
) -> list[ManifestLine]:
    """All manifest lines of one teacher under the root, filtered to `splits`, sorted by target.

    Without `teacher_hash` the root must hold exactly one teacher's manifests. A line that does
    not parse is a `UserError` naming its part file: a damaged manifest must not pass silently.
    """
    if teacher_hash is None:
        found = teacher_hashes(storage)
        if not found:
            raise UserError(no_manifests(storage, "manifests"))
        if len(found) > 1:
            raise UserError(
                f"{storage.url('manifests')}: manifests of several teachers {found}; "
                "pass the teacher hash"
            )
        teacher_hash = found[0]
    lines: dict[str, ManifestLine] = {}
    for key in storage.list(f"manifests/{teacher_hash}"):
        for number, text in enumerate(storage.read_bytes(key).decode().splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = ManifestLine.from_json(text)
            except (ValueError, TypeError) as exc:
                raise UserError(
                    f"{storage.url(key)} line {number}: bad manifest line ({exc})"
                ) from None
            if line.split in splits:
                lines[line.target] = line
    return [lines[target] for target in sorted(lines)]
