"""The KubeRay manifests in k8s/ are what the operator accepts, checked offline as CI can:
each against its CustomResourceDefinition's OpenAPI schema (KubeRay's CRDs, in the workspace's
shared/kuberay/), made strict where Kubernetes would silently prune an unknown field, and each
Pod template as a Kubernetes Pod (kubernetes-validate's strict core/v1 schemas). They name the
image `make print-image` builds (cluster.yaml's), run the README's commands, and describe one
cluster: a head that takes no work and GPU workers the autoscaler starts from zero."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERAY = ROOT.parent / "shared" / "kuberay"  # CI lays shared/ beside the clone
MANIFESTS = sorted((ROOT / "k8s").glob("*.yaml"))
KUBERNETES = "1.33"  # a Kubernetes version KubeRay supports


def crd_schemas() -> dict[str, dict[str, Any]]:
    """kind -> the OpenAPI schema of its stored version, from KubeRay's CRD files."""
    if not KUBERAY.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"KubeRay's CRDs are missing: {KUBERAY} (shared/ beside the clone)")
        pytest.skip(f"no {KUBERAY} on this machine")
    schemas = {}
    for path in KUBERAY.glob("ray.io_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["storage"])
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def strict(schema: Any) -> Any:
    """The schema with every object closed that Kubernetes would prune unknown fields from
    (structural schemas drop them silently, so a typo would validate and then do nothing)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft202012Validator]:
    return {kind: jsonschema.Draft202012Validator(strict(s)) for kind, s in crd_schemas().items()}


def manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in MANIFESTS}


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    key = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}.get(manifest["kind"])
    return spec[key] if key else spec


def pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster_spec(manifest)
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def as_pod(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": template["spec"]}


def test_the_folder_has_a_cluster_a_job_per_step_and_the_service():
    kinds = {name: m["kind"] for name, m in manifests().items()}
    assert kinds == {
        "raycluster.yaml": "RayCluster",
        "rayjob-generate.yaml": "RayJob",
        "rayjob-train.yaml": "RayJob",
        "rayjob-evaluate.yaml": "RayJob",
        "rayservice.yaml": "RayService",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_kuberays_crd(path, validators):
    manifest = yaml.safe_load(path.read_text())
    assert manifest["apiVersion"] == "ray.io/v1"
    validators[manifest["kind"]].validate(manifest)


def test_the_crd_check_is_strict(validators):
    broken = copy.deepcopy(manifests()["raycluster.yaml"])
    broken["spec"]["workerGroupSpecs"][0]["replica"] = 0  # a typo Kubernetes would drop
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validators["RayCluster"].validate(broken)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_pod_templates_are_kubernetes_pods(path):
    for template in pod_templates(yaml.safe_load(path.read_text())):
        kubernetes_validate.validate(as_pod(template), KUBERNETES, strict=True)


def test_the_pod_check_is_strict():
    template = copy.deepcopy(pod_templates(manifests()["raycluster.yaml"])[1])
    template["spec"]["containers"][0]["resource"] = {}  # not a container field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(as_pod(template), KUBERNETES, strict=True)


def test_every_container_runs_the_projects_image():
    built = subprocess.run(
        ["make", "-s", "print-image"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    cluster_yaml = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert cluster_yaml["docker"]["image"] == built
    for name, manifest in manifests().items():
        for template in pod_templates(manifest):
            for container in template["spec"]["containers"]:
                assert container["image"] == built, f"{name}: set it to `make print-image`"


def test_one_cluster_shape_a_cpu_head_without_work_and_gpu_workers_from_zero():
    specs = [cluster_spec(m) for m in manifests().values()]
    assert all(spec == specs[0] for spec in specs), "every RayJob carries raycluster.yaml's spec"
    spec = specs[0]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in head["limits"]
    assert spec["rayVersion"] == ray_version()
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == group["replicas"] == 0 < group["maxReplicas"]
        worker = group["template"]["spec"]["containers"][0]["resources"]
        assert worker["limits"]["nvidia.com/gpu"] == worker["requests"]["nvidia.com/gpu"] == "1"


def test_jobs_are_the_readmes_commands_and_are_retried():
    readme = " ".join(re.sub(r"\\\n", " ", (ROOT / "README.md").read_text()).split())
    for name, manifest in manifests().items():
        if manifest["kind"] != "RayJob":
            continue
        spec = manifest["spec"]
        assert spec["entrypoint"] in readme, f"{name}: the README's command, word for word"
        assert spec["backoffLimit"] >= 1  # a lost driver re-runs the idempotent job
        assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"].endswith(".zip")


def ray_version() -> str:
    pins = (ROOT / "constraints.txt").read_text()
    return re.search(r"^ray==(\S+)$", pins, re.M).group(1)


def test_the_service_runs_the_served_student_with_valid_options():
    """serveConfigV2 is a Serve config whose app is `serving.app:build_app` with options that
    `jobs.serve` accepts, on a fraction of a GPU per replica, code shipped as the jobs ship it."""
    from ray.serve.deployment import Application

    from serving.app import build_app, config_from_args

    serve_config = yaml.safe_load(manifests()["rayservice.yaml"]["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    assert app["import_path"] == "serving.app:build_app" and app["route_prefix"] == "/"
    assert app["runtime_env"]["working_dir"].endswith(".zip")
    config = config_from_args(app["args"])
    assert config.replicas == (1, 8) and 0 < config.gpus_per_replica < 1
    assert config.student.startswith("s3://")
    assert isinstance(build_app(app["args"]), Application)
