"""Content-hash ids: the same image bytes get the same id wherever and however they are named."""

import hashlib
import json
from typing import Any

ID_LENGTH = 16


def sha256_hex(data: bytes) -> str:
    """Full SHA-256 of bytes, for manifest integrity fields."""
    return hashlib.sha256(data).hexdigest()


def content_id(data: bytes) -> str:
    """Short hex id of an image's bytes (64 bits: collisions are negligible at data-set scale)."""
    return sha256_hex(data)[:ID_LENGTH]


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return sha256_hex(text.encode())[:ID_LENGTH]
