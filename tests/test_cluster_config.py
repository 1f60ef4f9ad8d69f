"""cluster.yaml is a valid Ray cluster-launcher config (checked offline) with the intended shape."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
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
    assert {"g5.xlarge", "p4d.24xlarge"} <= instance_types
    for name, spec in workers.items():
        assert spec["min_workers"] == 0, name
        assert spec["max_workers"] >= 1, name
        assert spec["resources"]["GPU"] >= 1, name
    spot = [s for s in workers.values() if s["node_config"]["InstanceType"] == "g5.xlarge"]
    assert all(s["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for s in spot)


def test_image_matches_the_installed_ray(config: dict[str, Any]) -> None:
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert config["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-{python}-")
    assert config["docker"]["container_name"]


def test_installs_this_checkout_on_every_node(config: dict[str, Any]) -> None:
    mounted = [remote for remote, local in config["file_mounts"].items() if local == "."]
    assert mounted
    assert any(f"pip install -e {mounted[0]}" in cmd for cmd in config["setup_commands"])
