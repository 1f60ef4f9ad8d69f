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
    teacher: str = "styleid"  # which teacher made the target: styleid | lsast

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    @classmethod
    def from_json(cls, text: str) -> ManifestLine:
        """Parse one line; missing or unknown fields raise `ValueError` (lines written before
        LSAST have no `teacher`: StyleID made them)."""
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        if set(data) | {"teacher"} != names:
            raise ValueError(f"manifest line fields {sorted(data)} != {sorted(names)}")
        return cls(**data)


@dataclass(frozen=True)
class FailureLine:
    """One input that could not be used, and why (the job went on without it)."""

    url: str
    role: str  # "content" | "style"
    reason: str
    teacher_hash: str


def write_lines(storage: Storage, key: str, lines: list[ManifestLine] | list[FailureLine]) -> None:
    """Write a whole part file in one PUT (parts are per tile, so no appends are needed)."""
    text = "".join(json.dumps(asdict(line), sort_keys=True) + "\n" for line in lines)
    storage.write_bytes(key, text.encode())


def manifest_parts(storage: Storage, teacher_hash: str) -> dict[str, list[ManifestLine]]:
    """Every manifest part of one teacher and its lines as stored (no de-duplication).

    A line that does not parse is a `UserError` naming its part file: a damaged manifest must
    not pass silently.
    """
    parts: dict[str, list[ManifestLine]] = {}
    for key in storage.list(f"manifests/{teacher_hash}"):
        lines = parts[key] = []
        for number, text in enumerate(storage.read_bytes(key).decode().splitlines(), 1):
            if not text.strip():
                continue
            try:
                lines.append(ManifestLine.from_json(text))
            except (ValueError, TypeError) as exc:
                raise UserError(
                    f"{storage.url(key)} line {number}: bad manifest line ({exc})"
                ) from None
    return parts


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

    Without `teacher_hash` the root must hold exactly one teacher's manifests.
    """
    if teacher_hash is None:
        found = sorted(
            {key.split("/")[1] for key in storage.list("manifests") if key.count("/") >= 2}
        )
        if not found:
            raise UserError(no_manifests(storage, "manifests"))
        if len(found) > 1:
            raise UserError(
                f"{storage.url('manifests')}: manifests of several teachers {found}; "
                "pass the teacher hash"
            )
        teacher_hash = found[0]
    lines = {
        line.target: line
        for part in manifest_parts(storage, teacher_hash).values()
        for line in part
        if line.split in splits
    }
    return [lines[target] for target in sorted(lines)]


def listed_pairs(storage: Storage, teacher_hash: str) -> set[tuple[str, str]]:
    """(content URL, style URL) of every pair one teacher's manifests list: the pairs a run
    must not make again, whichever tile (of whatever earlier plan) listed them."""
    parts = manifest_parts(storage, teacher_hash).values()
    return {(line.content, line.style) for part in parts for line in part}


def forget_failures(storage: Storage, teacher_hash: str, inputs: set[str]) -> None:
    """Drop the failure records of `inputs` before a run that tries them again.

    A run retries every pair of its inputs that no manifest lists, so a record of one of its
    inputs is either about to be written anew (it still fails) or wrong (it was restored);
    records of other runs' inputs are kept.
    """
    for key in storage.list(f"failures/{teacher_hash}"):
        lines = storage.read_bytes(key).decode().splitlines()
        kept = [text for text in lines if text.strip() and json.loads(text)["url"] not in inputs]
        if len(kept) == len(lines):
            continue
        if kept:
            storage.write_bytes(key, "".join(text + "\n" for text in kept).encode())
        else:
            storage.delete(key)
