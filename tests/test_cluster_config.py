"""cluster.yaml is a valid Ray cluster-launcher config (checked offline) with the intended shape,
and the deployment files agree: pyproject.toml, constraints.txt, the Dockerfile, the Makefile,
cluster.yaml, runtime_env.yaml and the documented `ray job submit` commands."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import torch
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

from teacher_workers.models import cast
from teacher_workers.sizing import teacher_parameters, unet_skeleton
from teacher_workers.styleid.config import StyleIDConfig
from teacher_workers.styleid.engine import CONTENT_KINDS, STYLE_KINDS, feature_bytes

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
MAKEFILE = (ROOT / "Makefile").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    types = config["available_node_types"]
    return {name: spec for name, spec in types.items() if name != config["head_node_type"]}


def test_matches_rays_schema(config: dict[str, Any]) -> None:
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))


def test_passes_ray_ups_offline_checks(config: dict[str, Any]) -> None:
    # What `ray up` does before it talks to AWS: merge the provider defaults, then validate.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_schema_check_is_strict(config: dict[str, Any]) -> None:
    broken = copy.deepcopy(config)
    broken["available_node_types"][config["head_node_type"]]["resource"] = {"CPU": 0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


def test_head_runs_no_work(config: dict[str, Any]) -> None:
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert "InstanceMarketOptions" not in head["node_config"]  # on-demand


def test_gpu_workers_scale_from_zero(config: dict[str, Any]) -> None:
    workers = worker_types(config)
    instance_types = {spec["node_config"]["InstanceType"] for spec in workers.values()}
    assert {"g5.2xlarge", "p4d.24xlarge"} <= instance_types
    for name, spec in workers.items():
        assert spec["min_workers"] == 0, name
        assert spec["max_workers"] >= 1, name
        assert spec["resources"]["GPU"] >= 1, name
    spot = [s for s in workers.values() if s["node_config"]["InstanceType"] == "g5.2xlarge"]
    assert all(s["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for s in spot)


HOST_GIB = {"g5.xlarge": 16, "g5.2xlarge": 32}  # EC2's published memory of the A10G nodes
OBJECT_STORE_SHARE = 0.3  # of a node's RAM, Ray's default; the rest is its `memory` resource


def test_a10g_workers_hold_an_offloaded_12x8_tile(config: dict[str, Any]) -> None:
    """Host memory for the largest auto tile's features, offloaded, plus the weights (loaded
    through host memory), computed from SD 1.5's architecture at 512 px in fp16."""
    unet = cast(unet_skeleton("sd15-random", None), None, torch.float16)
    styleid = StyleIDConfig(resolution=512)
    q = feature_bytes(unet, styleid, CONTENT_KINDS, 512, 512)
    kv = feature_bytes(unet, styleid, STYLE_KINDS, 512, 512)
    needed = 12 * q + 8 * kv + 2 * teacher_parameters("sd15-random")
    assert 18e9 < needed < 18.2e9  # 16.2 GB of features + 1.9 GB of weights
    a10g = [
        s for s in worker_types(config).values() if s["node_config"]["InstanceType"] in HOST_GIB
    ]
    assert a10g
    for spec in a10g:
        ram = HOST_GIB[spec["node_config"]["InstanceType"]] * 2**30
        usable = int(ram * (1 - OBJECT_STORE_SHARE))
        assert spec["resources"]["memory"] == usable  # what Ray gives tasks on such a node
        assert usable > needed


def read_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, pinned = line.partition("==")
            assert sep and pinned.strip(), f"not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = pinned.strip()
    return pins


def project_requirements() -> tuple[list[Requirement], list[Requirement]]:
    """pyproject.toml's [project] dependencies, and the requirements of its extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    return [Requirement(r) for r in project["dependencies"]], [Requirement(r) for r in extras]


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = read_pins()
    runtime, extras = project_requirements()
    for req in [*runtime, *extras]:
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned, f"{req.name} is not pinned in constraints.txt (make lock)"
        assert req.specifier.contains(pinned, prereleases=True), f"{req} vs =={pinned}"


def test_the_tested_environment_is_the_pinned_one() -> None:
    """CI installs with `-c constraints.txt` (Makefile), so the direct dependencies the tests
    import are exactly the pinned versions."""
    pins = read_pins()
    runtime, _ = project_requirements()
    for req in runtime:
        assert version(req.name) == pins[canonicalize_name(req.name)], req.name
    install = re.search(r"^\$\(VENV\)/\.installed:.*?(?=^\S)", MAKEFILE, re.M | re.S)
    assert install
    pip_lines = [line for line in install.group().splitlines() if "pip install" in line]
    assert len(pip_lines) == 2
    assert all("-c constraints.txt" in line for line in pip_lines)
    assert "constraints.txt" in install.group().splitlines()[0]  # re-installs when pins change


def test_dockerfile_bakes_in_the_pinned_dependencies() -> None:
    pins = read_pins()
    base = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.M)
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert base == [f"rayproject/ray:{pins['ray']}-{python}-gpu"]
    assert pins["ray"] == ray.__version__
    assert "COPY constraints.txt /tmp/constraints.txt" in DOCKERFILE
    command = re.search(r"^RUN pip install (.*?)(?:\n\n|\Z)", DOCKERFILE, re.M | re.S)
    assert command
    _, sep, names = command.group(1).partition("-c /tmp/constraints.txt")
    assert sep
    installed = [Requirement(word.strip('"')) for word in names.split() if word != "\\"]
    runtime, _ = project_requirements()
    wanted = {(canonicalize_name(r.name), frozenset(r.extras)) for r in runtime}
    got = {(canonicalize_name(r.name), frozenset(r.extras)) for r in installed}
    # boto3: the head's autoscaler; gcsfs: the gcs extra, so gs:// runs on the cluster too
    assert got == wanted | {("boto3", frozenset()), ("gcsfs", frozenset())}
    assert all(not r.specifier for r in installed)  # versions come from the pins only


def test_cluster_runs_the_projects_image(config: dict[str, Any]) -> None:
    """The image `make image` builds now: its tag hashes the Dockerfile and the pins, so
    cluster.yaml names an image with exactly these dependencies."""
    built = subprocess.run(
        ["make", "-s", "print-image"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert built.startswith("ghcr.io/OWNER/styleid-distill:deps-")
    assert config["docker"]["image"] == built, "run `make push`, then set docker.image to it"
    assert config["docker"]["container_name"]


def test_nodes_install_nothing_at_boot(config: dict[str, Any]) -> None:
    commands = [
        *config.get("setup_commands", []),
        *config.get("head_setup_commands", []),
        *config.get("worker_setup_commands", []),
        *(
            cmd
            for spec in config["available_node_types"].values()
            for cmd in spec.get("worker_setup_commands", [])
        ),
    ]
    assert not [cmd for cmd in commands if "pip" in cmd]
    assert "." not in config.get("file_mounts", {}).values()  # code ships per job instead


def test_runtime_env_keeps_local_clutter_out_of_the_upload() -> None:
    env = yaml.safe_load((ROOT / "runtime_env.yaml").read_text())
    RuntimeEnv(**env)  # a runtime env Ray accepts
    assert {".git", ".venv", "runs", "**/__pycache__", "*.onnx"} <= set(env["excludes"])
    assert "working_dir" not in env  # given as --working-dir, from where the user submits


DOCUMENTED = ["README.md", "cluster.yaml", "runtime_env.yaml", "Dockerfile", "jobs/*.py"]


def test_every_documented_submit_ships_the_code() -> None:
    """README, cluster.yaml and the job docstrings tell one story: each `ray job submit`
    uploads the checkout with the runtime env's excludes."""
    found = 0
    for pattern in DOCUMENTED:
        for path in sorted(ROOT.glob(pattern)):
            for match in re.finditer(r"ray job submit(.*?) -- ", path.read_text(), re.S):
                options = match.group(1)
                assert "--working-dir ." in options, f"{path.name}: {match.group()!r}"
                assert "--runtime-env runtime_env.yaml" in options, f"{path.name}: {match.group()}"
                found += 1
    assert found >= 6
