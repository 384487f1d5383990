"""Every Kubernetes document in deploy/kubernetes against the Kubernetes OpenAPI schemas that
kubernetes-validate bundles (custom resources, which have none there, against the small schemas
in CUSTOM_RESOURCE_SCHEMAS), then what the production review asks of the workloads."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.files import (
    IMAGE_UID,
    _command,
    _containers,
    _doc_id,
    _image_env,
    _k8s_documents,
    _needed_stop_s,
    _plain_env,
    _secret_comment_keys,
    _workload,
    _workloads,
)
from vidgo_stems.heartbeat import HEARTBEAT_INTERVAL_S

# The oldest Kubernetes minor the manifests support, and the newest one the package knows.
K8S_VERSIONS = ["1.29", kubernetes_validate.latest_version()]

# Custom resources: no schema in kubernetes-validate, so the fields we rely on are checked here.
CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}},
            },
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                # KEDA reads every trigger setting as a string.
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", _k8s_documents(), ids=_doc_id)
def test_kubernetes_documents_match_their_schemas(item, version):
    _, doc = item
    custom = CUSTOM_RESOURCE_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        jsonschema.Draft202012Validator(custom).validate(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_every_workload_runs_hardened_and_bounded(workload):
    pod = workload["spec"]["template"]["spec"]
    pod_sc = pod.get("securityContext", {})
    assert pod.get("automountServiceAccountToken") is False
    assert pod_sc.get("runAsUser") == IMAGE_UID
    assert pod_sc.get("runAsGroup") == IMAGE_UID
    if any("emptyDir" in v or "persistentVolumeClaim" in v for v in pod.get("volumes", [])):
        assert pod_sc.get("fsGroup") == IMAGE_UID
    for container in _containers(workload):
        name = container["name"]
        sc = container.get("securityContext", {})
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", name
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, name
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) != 0, name
        assert sc.get("readOnlyRootFilesystem") is True, name
        assert sc.get("allowPrivilegeEscalation") is False, name
        assert sc.get("privileged") is not True, name
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
        assert not sc.get("capabilities", {}).get("add"), name
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
        assert {"cpu", "memory"} <= set(resources.get("limits", {})), name
        assert "livenessProbe" in container, name
        assert "readinessProbe" in container, name
        image = container["image"]
        assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, f"{name}: untagged image"
        assert not image.endswith(":latest"), f"{name}: :latest is not a release"


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_read_only_containers_can_write_where_they_must(workload):
    image_env = _image_env()
    pod = workload["spec"]["template"]["spec"]
    for container in _containers(workload):
        mounts = [
            PurePosixPath(m["mountPath"])
            for m in container.get("volumeMounts", [])
            if not m.get("readOnly")
        ]
        env = {**image_env, **_plain_env(container)}
        needed = [PurePosixPath("/tmp")]
        if "worker" in _command(container):
            needed += [
                PurePosixPath(env["VIDGO_STEMS_SCRATCH_DIR"]),
                PurePosixPath(env["VIDGO_STEMS_HEARTBEAT_FILE"]).parent,
                PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"]),
            ]
        for path in needed:
            assert any(path == m or m in path.parents for m in mounts), (
                f"{container['name']}: nothing writable mounted at {path}"
            )
        volumes = {v["name"] for v in pod.get("volumes", [])}
        assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes


def test_worker_runs_unsupervised_and_is_probed_by_its_heartbeat():
    worker = _workload("worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    command = _command(container)
    assert command[:2] == ["vidgo-stems", "worker"]
    assert "--no-supervise" in command
    assert "VIDGO_STEMS_HEARTBEAT_FILE" in _plain_env(container)
    max_ages = {}
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container[probe_name]
        exec_command = probe["exec"]["command"]
        assert exec_command[:2] == ["vidgo-stems", "healthcheck"], probe_name
        max_age = float(exec_command[exec_command.index("--max-age") + 1])
        # A beat every HEARTBEAT_INTERVAL_S: allow a few to be late before calling it dead.
        assert max_age >= 3 * HEARTBEAT_INTERVAL_S, probe_name
        # The probe starts a Python process: the default 1 s timeout is too short.
        assert probe.get("timeoutSeconds", 1) >= 5, probe_name
        max_ages[probe_name] = max_age
    assert max_ages["livenessProbe"] >= max_ages["readinessProbe"]


def test_worker_grace_period_outlasts_a_warm_shutdown():
    worker = _workload("worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > _needed_stop_s(_plain_env(container))


def test_every_workload_has_a_disruption_budget_that_allows_drains():
    budgets = [doc for _, doc in _k8s_documents() if doc["kind"] == "PodDisruptionBudget"]
    for workload in _workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            and b["spec"]["selector"]["matchLabels"]
        ]
        assert matching, f"no PodDisruptionBudget selects {workload['metadata']['name']}"
        for budget in matching:
            spec = budget["spec"]
            # A single replica must still be evictable, or node drains hang.
            if "minAvailable" in spec:
                assert spec["minAvailable"] < workload["spec"].get("replicas", 1)
            else:
                assert spec["maxUnavailable"] not in (0, "0%")


def test_gateway_never_sees_the_vidgo_key():
    gateway = _workload("gateway")
    worker = _workload("worker")
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    whole_sources = {
        json.dumps(source, sort_keys=True) for source in worker_container.get("envFrom", [])
    }
    # The worker gets VIDGO_API_KEY from the secret it loads whole (documented with the key).
    assert whole_sources and "VIDGO_API_KEY" in _secret_comment_keys()
    for container in _containers(gateway):
        for source in container.get("envFrom", []):
            assert json.dumps(source, sort_keys=True) not in whole_sources, source
        names = {e["name"] for e in container.get("env", [])}
        assert "VIDGO_API_KEY" not in names
        refs = [
            e["valueFrom"]["secretKeyRef"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        assert all(ref["key"] != "VIDGO_API_KEY" for ref in refs)
        assert {"REDIS_URL", "VIDGO_STEMS_GATEWAY_API_KEYS", "VIDGO_STEMS_STORAGE_URL"} <= names
        # Every key it cannot start without is in the documented secret.
        required = {ref["key"] for ref in refs if not ref.get("optional")}
        assert required <= _secret_comment_keys(), required - _secret_comment_keys()


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_metrics_are_scraped(workload):
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/path") == "/metrics"
    ports = {p["containerPort"] for c in _containers(workload) for p in c.get("ports", [])}
    assert int(annotations["prometheus.io/port"]) in ports
    for container in _containers(workload):
        env = _plain_env(container)
        if "VIDGO_STEMS_METRICS_PORT" in env:
            assert int(env["VIDGO_STEMS_METRICS_PORT"]) == int(annotations["prometheus.io/port"])


def test_gateway_is_reachable_through_a_service():
    gateway = _workload("gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    ports = [p for c in _containers(gateway) for p in c.get("ports", [])]
    services = [
        doc
        for _, doc in _k8s_documents()
        if doc["kind"] == "Service" and doc["spec"]["selector"].items() <= labels.items()
    ]
    assert services, "no Service selects the gateway pods"
    for service in services:
        assert service["spec"]["selector"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(target in (p["containerPort"], p.get("name")) for p in ports), target


def test_keda_scales_the_worker_deployment_alone():
    scaled = [doc for _, doc in _k8s_documents() if doc["kind"] == "ScaledObject"]
    assert scaled
    for doc in scaled:
        target = _workload(doc["spec"]["scaleTargetRef"]["name"])
        assert target["kind"] == "Deployment"
        # Applying the manifest must not reset the count KEDA chose.
        assert "replicas" not in target["spec"]
        for trigger in doc["spec"]["triggers"]:
            from_env = trigger["metadata"].get("addressFromEnv")
            if from_env:
                (container,) = target["spec"]["template"]["spec"]["containers"]
                assert from_env in _plain_env(container) or (
                    container.get("envFrom") and from_env in _secret_comment_keys()
                )
