"""deploy/k8s/: valid against the Kubernetes schemas, and consistent with itself and the farm."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from comfyfarm.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"


def documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] in kinds]


def containers() -> list[dict[str, Any]]:
    workloads = of_kind("Deployment", "StatefulSet")
    return [c for w in workloads for c in w["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize("doc", of_kind("Deployment", "StatefulSet", "Service", "ConfigMap",
                                        "PersistentVolumeClaim"),
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")  # fmt: skip
def test_every_manifest_is_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    """Each built-in resource validates (strictly: no unknown fields) against Kubernetes 1.30."""
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_selectors_match_their_pods() -> None:
    """A workload's selector matches its pod labels; every Service selects some workload's pods."""
    pod_labels = []
    for workload in of_kind("Deployment", "StatefulSet"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pod_labels.append(labels)
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service["metadata"]


def test_secrets_come_from_the_one_secret_the_readme_creates() -> None:
    """Every secretKeyRef names a key that deploy/k8s/README.md's `create secret` command sets,
    and no manifest carries a secret value."""
    created = set(re.findall(r"--from-literal=([a-z-]+)=", (K8S / "README.md").read_text()))
    for container in containers():
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "comfyfarm" and ref["key"] in created, env
            elif re.search(r"PASSWORD|TOKEN|SECRET|AUTH", env["name"]):
                pytest.fail(f"{env['name']} has a literal value in a manifest")


def test_comfyfarm_containers_run_commands_that_exist() -> None:
    """Every container of the comfyfarm image runs a `comfyfarm` subcommand."""
    for container in containers():
        if container["image"].startswith("comfyfarm"):
            assert container["args"][0] in COMMANDS, container["name"]


def test_keda_scales_the_gpu_workers_on_an_exported_metric() -> None:
    """The ScaledObject targets the GPU worker Deployment, queried on comfyfarm_queue_depth."""
    (scaled,) = of_kind("ScaledObject")
    deployments = {d["metadata"]["name"] for d in of_kind("Deployment")}
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "comfyfarm_queue_depth" in trigger["metadata"]["query"]
    assert float(trigger["metadata"]["threshold"]) > 0
    assert 0 < scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
