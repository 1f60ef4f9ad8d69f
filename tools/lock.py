"""Write constraints.txt: exact versions of everything this project installs, from a working venv.

    .venv/bin/python tools/lock.py      # after changing pyproject.toml's dependencies (make lock)

The pins are read from the installed distributions, walking pyproject.toml's requirements
(with their extras) through each distribution's own requirements, so the file holds what was
tested and nothing else. CI (`make install`), the Docker image and so the cluster install with
`-c constraints.txt`. Markers are evaluated for this interpreter: run it on Linux x86_64 with
Python 3.11, the image's platform, or platform-only wheels (nvidia-*, triton) go missing.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# Not a dependency of the project, but the image needs it: the head's autoscaler launches EC2
# nodes with boto3 (Ray's AWS examples pip-install it on the head at boot instead).
IMAGE_EXTRAS = ["boto3"]


def closure(roots: list[str], seen: dict[str, str]) -> dict[str, str]:
    """name -> installed version for `roots` and all they require (extras included), except
    names already in `seen`."""
    found: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"error: {name} is required but not installed; run `make install` first")
        if name not in seen:
            found[name] = dist.version
        extras = ["", *sorted(req.extras)]
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return found


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = closure([*project["dependencies"], *IMAGE_EXTRAS], {})
    extra_roots = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    extras = closure(extra_roots, runtime)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [
        "# Exact versions this project is tested with; written by tools/lock.py (`make lock`),",
        f"# on {sys.platform} with Python {py}. Install with `pip install -c constraints.txt ...`.",
        "",
        "# [project] dependencies, what they pull in, and boto3 (the image installs these)",
        *(f"{name}=={v}" for name, v in sorted(runtime.items())),
        "",
        "# the extras (onnx, dev) add these",
        *(f"{name}=={v}" for name, v in sorted(extras.items())),
    ]
    (ROOT / "constraints.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
