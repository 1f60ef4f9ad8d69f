"""`<root>/run.json`: what ran, so a result can be traced to its code and settings (no secrets)."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from typing import Any

from common.errors import UserError, first_line
from common.storage import Storage, redact

PACKAGES = "styleid-distill torch torchvision diffusers transformers ray fsspec s3fs pillow"


def package_versions() -> dict[str, str | None]:
    """The version of each of PACKAGES, None where one is not installed."""
    installed = {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions()}
    return {name: installed.get(name) for name in PACKAGES.split()}


def write_run_info(
    storage: Storage, command: str, config: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Write run.json: the command's config, the storage's options redacted, package versions."""
    info = {
        "command": command,
        "config": config,
        "storage_options": redact(storage.options),
        "versions": package_versions(),
        "python": platform.python_version(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    storage.write_bytes(
        "run.json", json.dumps(info, indent=2, sort_keys=True, default=str).encode()
    )
    return info


def read_run_info(storage: Storage) -> dict[str, Any] | None:
    """run.json of a root, or None where there is none; a damaged one is a `UserError`."""
    try:
        info = json.loads(storage.read_bytes("run.json"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise UserError(f"{storage.url('run.json')} is not valid JSON: {exc}") from None
    except OSError as exc:  # an unreachable store or server, refused credentials
        raise UserError(f"cannot read {storage.url('run.json')}: {first_line(exc)}") from None
    if not isinstance(info, dict):
        raise UserError(f"{storage.url('run.json')} is not a JSON object")
    return info
