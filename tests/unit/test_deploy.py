"""The deployment files in deploy/: valid for their tools, and holding to the production review.

Offline, from schemas that installed packages ship: every Kubernetes document against the
Kubernetes OpenAPI schemas bundled by kubernetes-validate (custom resources, which have none
there, against the small schemas in CUSTOM_RESOURCE_SCHEMAS), and compose.yaml, interpolated as
Compose would, against the Compose Specification schema vendored by check-jsonschema (the
compose-spec project's schema, Apache-2.0). Then what the review asks of each file, read from the
files themselves, so that a regression in any of them fails here.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from celeryconfig import celery_config
from worker.heartbeat import HEARTBEAT_INTERVAL_S
from worker.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
WORKER_UNIT = DEPLOY / "systemd" / "vidgo-stems-worker.service"
GATEWAY_UNIT = DEPLOY / "systemd" / "vidgo-stems-gateway.service"

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

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
IMAGE_UID = 10001
# Long-running compose services restart by themselves; these run once and exit.
COMPOSE_ONE_SHOT = {"buckets"}

# What an operator exports for `docker compose up`, and the least a worker-only start needs.
COMPOSE_FULL_ENV = {
    "VIDGO_API_KEY": "vk-test",
    "MINIO_ROOT_PASSWORD": "minio-secret-123",
    "MINIO_ROOT_USER": "stems",
    "MINIO_PUBLIC_URL": "http://stems.example.com:9000",
    "VIDGO_STEMS_GATEWAY_API_KEYS": "key-one,key-two",
    "VIDGO_STEMS_WEBHOOK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
    "VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL": "https://stems.example.com",
}
COMPOSE_MINIMAL_ENV = {"VIDGO_API_KEY": "vk-test", "MINIO_ROOT_PASSWORD": "minio-secret-123"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Every check here reads packaged schemas: any network use is a failure."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("test_deploy must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --- reading the files ------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Refuses a key given twice in one mapping, as kubectl and Compose do (PyYAML would keep
    the last one silently: a lost `---` would merge two documents into one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` keys may be overridden; that is what they are for
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in K8S_FILES:
        for doc in yaml.load_all(path.read_text(), Loader=_StrictLoader):
            if doc:
                docs.append((path.name, doc))
    return docs


def _doc_id(item: tuple[str, dict[str, Any]]) -> str:
    name, doc = item
    return f"{name}:{doc['kind']}/{doc['metadata']['name']}"


def _workloads() -> list[dict[str, Any]]:
    return [doc for _, doc in _k8s_documents() if doc["kind"] in WORKLOAD_KINDS]


def _workload(name_part: str) -> dict[str, Any]:
    found = [doc for doc in _workloads() if name_part in doc["metadata"]["name"]]
    assert len(found) == 1, f"one workload named *{name_part}* expected, found {len(found)}"
    return found[0]


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _command(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def _plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _secret_comment_keys() -> set[str]:
    """Keys that the `kubectl create secret` comment in the manifests puts in the secret."""
    text = "\n".join(path.read_text() for path in K8S_FILES)
    return set(re.findall(r"--from-literal=([A-Z_][A-Z0-9_]*)=", text))


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _dockerfile_instructions("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def _dockerfile_instructions(name: str) -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            if instruction.upper() == name:
                found.append(args.strip())
    return found


def _unit(path: Path) -> dict[str, list[str]]:
    """Key -> values of a systemd unit (keys may repeat; sections do not matter here)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def _needed_stop_s(env: Mapping[str, str]) -> float:
    """How long a warm shutdown may take: the task hard time limit (as Celery gets it) plus the
    soft shutdown, for the defaults or the limits this environment sets."""
    fields = Settings.model_fields
    settings = Settings.model_construct(
        task_soft_time_limit_s=int(
            env.get("VIDGO_STEMS_TASK_SOFT_TIME_LIMIT_S", fields["task_soft_time_limit_s"].default)
        ),
        task_time_limit_s=int(
            env.get("VIDGO_STEMS_TASK_TIME_LIMIT_S", fields["task_time_limit_s"].default)
        ),
    )
    config = celery_config(settings)
    return float(config["task_time_limit"]) + float(config["worker_soft_shutdown_timeout"])


def _seconds(text: str | int) -> float:
    """A Compose (1h2m3s) or systemd (1020, 17min, 90s) duration in seconds."""
    if isinstance(text, int):
        return float(text)
    units = {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts and "".join(n + u for n, u in parts) == re.sub(r"\s", "", text), text
    return sum(float(n) * units[u or "s"] for n, u in parts)


# --- Compose interpolation --------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


class MissingVariable(Exception):
    pass


def _interpolate_text(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise ValueError(f"invalid interpolation in {text!r}")
        name = match["braced"] or match["named"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        # With a colon, an empty value counts as unset.
        present = bool(value) if op.startswith(":") else value is not None
        if op.endswith("-"):
            return value if present and value is not None else arg
        if op.endswith("?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return value or ""
        if op.endswith("+"):
            return arg if present else ""
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def _interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate_text(node, env)
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    return node


def _compose(env: Mapping[str, str]) -> dict[str, Any]:
    return _interpolate(_load_yaml(COMPOSE_FILE.read_text()), env)


def _container_env(service: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The environment a service's container gets: the image's, then the service's; a variable
    named without a value is passed on from `env` when set there, else left unset."""
    result = dict(_image_env()) if "build" in service else {}
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) if "=" in item else (item, None) for item in declared)
    for key, value in declared.items():
        if value is None:
            if key in env:
                result[key] = env[key]
        else:
            result[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return result


def _settings_in(container_env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(("VIDGO_", "REDIS_URL", "STEMS_DIR", "AWS_")):
            monkeypatch.delenv(name)
    for key, value in container_env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


# --- .dockerignore ----------------------------------------------------------------------------


def _dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: a path is out when it or a
    folder above it matches; the last matching pattern wins, `!` brings a path back."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in _dockerignore_patterns():
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


# --- Kubernetes -------------------------------------------------------------------------------


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


# --- Compose ----------------------------------------------------------------------------------


def _compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_compose_file_matches_the_compose_specification():
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_compose(COMPOSE_FULL_ENV)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_refuses_to_start_without_its_required_variables():
    for name in COMPOSE_MINIMAL_ENV:
        env = {k: v for k, v in COMPOSE_MINIMAL_ENV.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            _compose(env)


def test_workers_start_without_the_gateway_settings(monkeypatch):
    compose = _compose(COMPOSE_MINIMAL_ENV)  # the whole file interpolates: no MissingVariable
    worker_env = _container_env(compose["services"]["worker"], COMPOSE_MINIMAL_ENV)
    settings = _settings_in(worker_env, monkeypatch)
    settings.require_api_key()
    settings.require_redis_url()
    # The gateway gets no keys then, and refuses to start by itself.
    gateway_env = _container_env(compose["services"]["gateway"], COMPOSE_MINIMAL_ENV)
    assert "VIDGO_STEMS_GATEWAY_API_KEYS" not in gateway_env


@pytest.mark.parametrize("service", ["worker", "gateway"])
def test_compose_containers_get_valid_settings(service, monkeypatch):
    compose = _compose(COMPOSE_FULL_ENV)
    env = _container_env(compose["services"][service], COMPOSE_FULL_ENV)
    settings = _settings_in(env, monkeypatch)
    settings.require_redis_url()
    if service == "gateway":
        assert "VIDGO_API_KEY" not in env
        assert settings.gateway_api_keys
    else:
        settings.require_api_key()
        assert settings.webhook_secret is not None
        assert settings.public_callback_base_url == "https://stems.example.com"


def test_compose_services_restart_stop_in_time_and_report_health():
    services = _compose(COMPOSE_FULL_ENV)["services"]
    for name, service in services.items():
        if name in COMPOSE_ONE_SHOT:
            assert service.get("restart", "no") == "no", name
        else:
            assert service.get("restart") == "unless-stopped", name
    worker = services["worker"]
    assert worker["command"][:2] == ["vidgo-stems", "worker"]
    assert "--no-supervise" in worker["command"]
    test = worker["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:3] == ["vidgo-stems", "healthcheck"]
    assert float(test[test.index("--max-age") + 1]) >= 3 * HEARTBEAT_INTERVAL_S
    env = _container_env(worker, COMPOSE_FULL_ENV)
    assert _seconds(worker["stop_grace_period"]) > _needed_stop_s(env)


@pytest.mark.parametrize("service", ["worker", "gateway"])
def test_compose_read_only_containers_can_write_where_they_must(service):
    definition = _compose(COMPOSE_FULL_ENV)["services"][service]
    assert definition.get("read_only") is True
    assert definition.get("cap_drop") == ["ALL"]
    assert "no-new-privileges:true" in definition.get("security_opt", [])
    writable = [
        PurePosixPath(entry.split(":")[-1] if ":" in entry else entry)
        for entry in definition.get("volumes", [])
        if not entry.endswith(":ro")
    ] + [PurePosixPath(entry.split(":")[0]) for entry in definition.get("tmpfs", [])]
    env = _container_env(definition, COMPOSE_FULL_ENV)
    needed = [PurePosixPath("/tmp")]
    if service == "worker":
        needed += [
            PurePosixPath(env["VIDGO_STEMS_SCRATCH_DIR"]),
            PurePosixPath(env["VIDGO_STEMS_HEARTBEAT_FILE"]).parent,
            PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"]),
        ]
    for path in needed:
        assert any(path == w or w in path.parents for w in writable), f"{service}: {path}"


def test_compose_header_names_every_variable_it_reads():
    text = COMPOSE_FILE.read_text()
    # The comment lines before the first top-level key.
    header = "\n".join(line for line in text.split("\nx-")[0].splitlines() if line.startswith("#"))
    names = {
        m[0] or m[1]
        for m in re.findall(r"(?<!\$)\$\{([A-Z_0-9]+)|(?<!\$)\$([A-Z_][A-Z_0-9]*)", text)
    }
    compose = _load_yaml(text)
    for service in compose["services"].values():
        environment = service.get("environment") or {}
        names |= {key for key, value in environment.items() if value is None}
    assert names
    for name in sorted(names):
        assert name in header, f"the header of compose.yaml does not mention {name}"


# --- Dockerfile and .dockerignore -------------------------------------------------------------


def test_image_runs_unprivileged_with_the_worker_healthcheck():
    (user,) = _dockerfile_instructions("USER")
    uid, _, gid = user.partition(":")
    assert uid == str(IMAGE_UID) and gid in ("", str(IMAGE_UID))
    (healthcheck,) = _dockerfile_instructions("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[:2] == ["vidgo-stems", "healthcheck"]
    assert float(command[command.index("--max-age") + 1]) >= 3 * HEARTBEAT_INTERVAL_S
    (cmd,) = _dockerfile_instructions("CMD")
    assert json.loads(cmd)[:2] == ["vidgo-stems", "worker"]
    assert _dockerfile_instructions("STOPSIGNAL") == ["SIGTERM"]
    env = _image_env()
    run = " ".join(_dockerfile_instructions("RUN"))
    for path in (
        env["VIDGO_STEMS_SCRATCH_DIR"],
        str(PurePosixPath(env["VIDGO_STEMS_HEARTBEAT_FILE"]).parent),
    ):
        assert re.search(rf"chown {IMAGE_UID}:{IMAGE_UID} [^&]*{re.escape(path)}\b", run), path


def test_dockerignore_keeps_secrets_and_clutter_out_but_the_sources_in():
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".env",
        "deploy/.env",
        "prod.env",
        "tests/unit/test_deploy.py",
        "benchmarks/results.json",
        "stems/job/vocals.wav",
        "demo-out/x.flac",
        "worker/__pycache__/settings.cpython-311.pyc",
        "worker/settings.pyc",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".ruff_cache/x",
        "vidgo_stems.egg-info/PKG-INFO",
    ):
        assert _dockerignored(path), f"{path} would be sent to the build"
    for copy in _dockerfile_instructions("COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            if source.startswith("--"):
                continue
            assert not _dockerignored(source), f"COPY {source} is excluded by .dockerignore"
            for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
                rel = file.relative_to(ROOT).as_posix()
                assert not _dockerignored(rel), f"{rel} is excluded by .dockerignore"


# --- systemd ----------------------------------------------------------------------------------

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
}


@pytest.mark.parametrize("path", [WORKER_UNIT, GATEWAY_UNIT], ids=lambda p: p.name)
def test_units_are_hardened(path):
    unit = _unit(path)
    for key, value in HARDENING.items():
        assert unit.get(key, [None])[-1] == value, f"{path.name}: {key}={value} expected"
    assert unit["User"][-1] not in ("", "root", "0")
    assert unit["Restart"][-1] == "always"
    assert any("@system-service" in v for v in unit.get("SystemCallFilter", []))
    # Secrets come from a root-only file, never from the unit.
    assert unit.get("EnvironmentFile")
    assert not any("VIDGO_API_KEY" in v for v in unit.get("Environment", []))


def test_worker_unit_runs_unsupervised_and_stops_warm():
    unit = _unit(WORKER_UNIT)
    exec_start = shlex.split(unit["ExecStart"][-1])
    assert exec_start[1] == "worker" and "--no-supervise" in exec_start
    # SIGTERM to Celery's main process alone; its pool children finish their stages.
    assert unit["KillMode"][-1] == "mixed"
    assert unit.get("KillSignal", ["SIGTERM"])[-1] == "SIGTERM"
    env = dict(v.split("=", 1) for v in unit.get("Environment", []))
    assert _seconds(unit["TimeoutStopSec"][-1]) > _needed_stop_s(env)
    writable = [PurePosixPath(p) for v in unit.get("ReadWritePaths", []) for p in v.split()] + [
        PurePosixPath("/run") / d for v in unit.get("RuntimeDirectory", []) for d in v.split()
    ]
    for path in (
        PurePosixPath(env["VIDGO_STEMS_HEARTBEAT_FILE"]).parent,
        PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"]),
    ):
        assert any(path == w or w in path.parents for w in writable), path


def test_gateway_unit_listens_on_loopback_with_its_own_settings():
    unit = _unit(GATEWAY_UNIT)
    exec_start = shlex.split(unit["ExecStart"][-1])
    assert exec_start[1] == "gateway"
    assert exec_start[exec_start.index("--host") + 1] == "127.0.0.1"
    assert unit["EnvironmentFile"] != _unit(WORKER_UNIT)["EnvironmentFile"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("path", [WORKER_UNIT, GATEWAY_UNIT], ids=lambda p: p.name)
def test_units_pass_systemd_analyze(path, tmp_path):
    unit = tmp_path / path.name
    unit.write_text(path.read_text())
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        # The program is installed on the host, not here.
        if line.strip() and "is not executable" not in line
    ]
    assert not problems, "\n".join(problems)
    # Exposure 0.0 (locked down) to 10.0 (unprotected), times ten.
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr[-2000:]


def test_redis_keeps_queued_work():
    settings = dict(
        line.split(None, 1)
        for line in (DEPLOY / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    # Eviction could drop queue bindings or ledger entries; without AOF a restart loses work.
    assert settings["maxmemory-policy"] == "noeviction"
    assert settings["appendonly"] == "yes"


# --- Grafana dashboard and Prometheus rules ---------------------------------------------------

GRAFANA_DASHBOARD = DEPLOY / "grafana" / "vidgo-stems.json"
PROMETHEUS_ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
PROMETHEUS_SCRAPE = DEPLOY / "prometheus" / "scrape.yaml"

# Every metric the project exports, by the name a query uses (counters with _total, histograms
# by their base name: queried as _bucket, _sum and _count), with its type, its labels and where
# it is counted. "process": counted where it happens and summed per host, so aggregated with sum
# (counters through rate or increase). "cluster": read from Redis at scrape time, the same on
# every endpoint, so aggregated with max, never sum. "endpoint": each endpoint's own view of
# Redis. A metric renamed, added or relabelled in worker/observe fails the check against the code,
# and a dashboard or rule still using the old name fails the checks of the files.
EXPORTED_METRICS: dict[str, tuple[str, str, frozenset[str]]] = {
    "celery_task_sent_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_received_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_started_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_succeeded_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_failed_total": (
        "counter",
        "process",
        frozenset({"name", "hostname", "exception"}),
    ),
    "celery_task_retried_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_rejected_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_revoked_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_runtime": ("histogram", "process", frozenset({"name", "hostname"})),
    "celery_worker_up": ("gauge", "process", frozenset({"hostname"})),
    "vidgo_stems_jobs_entered_total": ("counter", "process", frozenset({"state"})),
    "vidgo_stems_jobs_finished_total": ("counter", "process", frozenset({"state"})),
    "vidgo_stems_stage_duration_seconds": (
        "histogram",
        "process",
        frozenset({"stage", "outcome"}),
    ),
    "vidgo_stems_vidgo_requests_total": ("counter", "process", frozenset({"endpoint", "outcome"})),
    "vidgo_stems_vidgo_request_duration_seconds": ("histogram", "process", frozenset({"endpoint"})),
    "vidgo_stems_vidgo_tasks_paid_total": ("counter", "process", frozenset()),
    "vidgo_stems_vidgo_resubmits_total": ("counter", "process", frozenset()),
    "vidgo_stems_ambiguous_submits_total": ("counter", "process", frozenset()),
    "vidgo_stems_credits_spent_total": ("counter", "process", frozenset()),
    "vidgo_stems_poll_lateness_seconds": ("histogram", "process", frozenset()),
    "vidgo_stems_webhook_deliveries_total": ("counter", "process", frozenset({"outcome"})),
    "vidgo_stems_download_bytes_total": ("counter", "process", frozenset()),
    "vidgo_stems_recoveries_total": ("counter", "process", frozenset()),
    "vidgo_stems_schedule_promoted_total": ("counter", "process", frozenset()),
    "vidgo_stems_cluster_scrape_ok": ("gauge", "endpoint", frozenset()),
    "vidgo_stems_jobs": ("gauge", "cluster", frozenset({"state"})),
    "celery_queue_length": ("gauge", "cluster", frozenset({"queue_name"})),
    "vidgo_stems_inflight_slots_used": ("gauge", "cluster", frozenset()),
    "vidgo_stems_inflight_slots_cap": ("gauge", "cluster", frozenset()),
    "vidgo_stems_polls_pending": ("gauge", "cluster", frozenset()),
    "vidgo_stems_polls_overdue": ("gauge", "cluster", frozenset()),
    "vidgo_stems_poll_oldest_overdue_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_rate_bucket_tokens": ("gauge", "cluster", frozenset({"kind"})),
    "vidgo_stems_rate_bucket_rate": ("gauge", "cluster", frozenset({"kind"})),
    "vidgo_stems_rate_limit_cooldown_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_submits_paused_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_credits_balance": ("gauge", "cluster", frozenset()),
    "vidgo_stems_credits_balance_age_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_workers_seen": ("gauge", "cluster", frozenset()),
    "vidgo_stems_events_total": ("counter", "cluster", frozenset({"event"})),
}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"instance", "job"})
# What the dashboard leaves out on purpose: messages published and received (runs started and
# the queue length tell more).
NOT_ON_DASHBOARD = {"celery_task_sent_total", "celery_task_received_total"}
# Grafana's interval variables, as a duration Prometheus would get for them.
GRAFANA_INTERVALS = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "30s",
    "${__interval}": "30s",
    "$__range": "6h",
    "${__range}": "6h",
}
METRIC_NAME = re.compile(r"\b(?:celery|vidgo_stems)_[a-z_]+")
RATE_FUNCTIONS = {"rate", "irate", "increase"}
# The alerts the operators rely on, and what each must read.
REQUIRED_ALERTS: dict[str, set[str]] = {
    "VidgoStemsNoWorkers": {"celery_worker_up", "vidgo_stems_workers_seen"},
    "VidgoStemsRedisUnreadable": {"vidgo_stems_cluster_scrape_ok"},
    "VidgoStemsJobFailureRatioHigh": {"vidgo_stems_jobs_finished_total"},
    "VidgoStemsPollLatenessHigh": {"vidgo_stems_poll_lateness_seconds_bucket"},
    "VidgoStemsPollsOverdue": {"vidgo_stems_poll_oldest_overdue_seconds"},
    "VidgoStems429Storm": {"vidgo_stems_vidgo_requests_total"},
    "VidgoStemsRateLimitCooldown": {"vidgo_stems_rate_limit_cooldown_seconds"},
    "VidgoStemsCreditsLow": {"vidgo_stems_credits_balance"},
    "VidgoStemsSubmitsPaused": {"vidgo_stems_submits_paused_seconds"},
    "VidgoStemsQueueBacklogGrowing": {"celery_queue_length"},
}
SEVERITIES = {"critical", "warning", "info"}
# As Prometheus reads `for:` (units largest first, each at most once).
PROMETHEUS_DURATION = re.compile(r"(?=.)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


def _metric_of(series: str) -> str:
    """The EXPORTED_METRICS entry a queried series belongs to (a histogram's _bucket, _sum and
    _count belong to the histogram)."""
    if series in EXPORTED_METRICS and EXPORTED_METRICS[series][0] != "histogram":
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and EXPORTED_METRICS.get(base, ("",))[0] == "histogram":
            return base
    raise AssertionError(f"{series} is not a series the project exports")


def _selectors(expr: str) -> list[tuple[Any, list[Any]]]:
    """Every series selector in a PromQL expression, with the nodes above it (outermost first).
    The expression must parse: syntax, function names and argument types are checked."""
    import promql_parser

    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        raise AssertionError(f"{expr!r} does not parse: {exc}") from None
    found: list[tuple[Any, list[Any]]] = []
    stack: list[Any] = []

    def enter(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node, list(stack)))
        stack.append(node)

    def leave(node: Any) -> None:
        stack.pop()

    promql_parser.walk(tree, enter, leave)
    return found


def _check_expr(expr: str) -> set[str]:
    """Checks one PromQL expression and returns the series it reads: every series is one the
    project exports, read with labels it has; cluster series are aggregated with max, process
    counters and histograms with sum over a rate; counters are only read through a rate."""
    import promql_parser

    named = set(METRIC_NAME.findall(expr))
    selectors = _selectors(expr)
    series = {selector.name for selector, _ in selectors}
    assert None not in series, f"{expr!r}: a selector without a metric name"
    assert named == series, f"{expr!r}: names {named} but selects {series}"
    for selector, above in selectors:
        metric = _metric_of(selector.name)
        kind, scope, labels = EXPORTED_METRICS[metric]
        known = labels | TARGET_LABELS | ({"le"} if selector.name.endswith("_bucket") else set())
        for matcher in selector.matchers.matchers:
            assert matcher.name in known, f"{expr!r}: {metric} has no label {matcher.name}"
        aggregates = [node for node in above if isinstance(node, promql_parser.AggregateExpr)]
        for aggregate in aggregates:
            modifier = aggregate.modifier
            if modifier is not None and modifier.type == promql_parser.AggModifierType.By:
                missing = set(modifier.labels) - known
                assert not missing, f"{expr!r}: {metric} has no label {missing}"
        calls = [node.func.name for node in above if isinstance(node, promql_parser.Call)]
        counted = kind == "counter" or selector.name.endswith(HISTOGRAM_SUFFIXES)
        if counted:
            assert calls and calls[-1] in RATE_FUNCTIONS, f"{expr!r}: {metric} needs rate()"
        else:
            assert not set(calls) & RATE_FUNCTIONS, f"{expr!r}: rate() of the gauge {metric}"
        nearest = str(aggregates[-1].op) if aggregates else None
        if scope == "cluster":
            assert nearest == "max", f"{expr!r}: {metric} is a cluster series: max, never sum"
        elif counted:
            assert nearest == "sum", f"{expr!r}: {metric} is counted per process: sum it"
    return series


def _exported_by_the_code(make_settings: Any) -> dict[str, tuple[str, str, frozenset[str]]]:
    """What worker/observe exports: the process metrics it defines, and the families the
    cluster collector yields from a Redis (fakeredis) holding one of everything."""
    import fakeredis
    from prometheus_client.metrics import MetricWrapperBase

    from worker.monitor.cluster import ClusterCollector
    from worker.observe import metrics
    from worker.pipeline.ledger import Ledger
    from worker.vidgo.gate import VidgoGate

    found: dict[str, tuple[str, str, frozenset[str]]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            name = family.name + ("_total" if family.type == "counter" else "")
            found[name] = (family.type, "process", frozenset(value._labelnames))
    client = fakeredis.FakeRedis()
    settings = make_settings(redis_key_prefix="deploy")
    ledger = Ledger(client, prefix="deploy")
    ledger.bump_counter("stalls")
    client.rpush("vidgo", "message")
    VidgoGate(client, prefix="deploy").record_balance(1000, at=time.time())
    for family in ClusterCollector(client, ledger, settings, ["vidgo"]).collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        scope = "endpoint" if family.name == "vidgo_stems_cluster_scrape_ok" else "cluster"
        labels = frozenset(key for sample in family.samples for key in sample.labels)
        found[name] = (family.type, scope, labels)
    return found


def _cli_commands() -> dict[str, set[str]]:
    """`vidgo-stems` subcommands and the options each takes."""
    from worker.cli import main

    return {
        name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for name, command in main.commands.items()
    }


def _check_commands(text: str) -> None:
    """Every `vidgo-stems ...` command quoted in text exists, with the options it is given."""
    commands = _cli_commands()
    for quoted in re.findall(r"`(vidgo-stems [^`]+)`", text):
        words = shlex.split(quoted)
        assert words[1] in commands, f"{quoted}: no such command"
        for word in words[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in commands[words[1]], f"{quoted}: no option {word}"


def _dashboard() -> dict[str, Any]:
    return json.loads(GRAFANA_DASHBOARD.read_text())


def _dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # the panels of a collapsed row
    return panels


def _dashboard_exprs() -> list[str]:
    exprs = []
    for panel in _dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, duration in GRAFANA_INTERVALS.items():
                expr = expr.replace(variable, duration)
            assert "$" not in expr, f"{panel['title']}: an unknown variable in {expr!r}"
            exprs.append(expr)
    return exprs


def _alert_rules() -> list[dict[str, Any]]:
    document = _load_yaml(PROMETHEUS_ALERTS.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert group["name"] and group["rules"]
        rules.extend(group["rules"])
    return rules


def test_the_metric_list_is_what_the_code_exports(make_settings):
    assert _exported_by_the_code(make_settings) == EXPORTED_METRICS


def test_dashboard_imports_with_a_prometheus_data_source_variable():
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard.get("id") is None  # Grafana assigns its own on import
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("DS_PROMETHEUS", "prometheus")
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = _dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", source) == source, panel["title"]
            assert target["expr"].strip(), panel["title"]
    # Panels do not overlap.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        position = panel["gridPos"]
        for x in range(position["x"], position["x"] + position["w"]):
            for y in range(position["y"], position["y"] + position["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_dashboard_queries_parse_and_read_only_exported_series_the_right_way():
    used: set[str] = set()
    for expr in _dashboard_exprs():
        used |= {_metric_of(series) for series in _check_expr(expr)}
    assert used == set(EXPORTED_METRICS) - NOT_ON_DASHBOARD


def test_dashboard_descriptions_name_real_commands():
    _check_commands(GRAFANA_DASHBOARD.read_text())


def test_alert_rules_load_and_each_says_what_to_do():
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "an alert name repeats"
    assert set(REQUIRED_ALERTS) <= set(names), set(REQUIRED_ALERTS) - set(names)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert PROMETHEUS_DURATION.fullmatch(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, rule["alert"]
        assert annotations["summary"].strip() and "\n" not in annotations["summary"]
        # What to do: at least one command or setting to reach for.
        assert "`" in annotations["description"], rule["alert"]
        _check_commands(annotations["description"])


@pytest.mark.parametrize("name", sorted(REQUIRED_ALERTS))
def test_each_required_alert_reads_what_it_is_about(name):
    (rule,) = [rule for rule in _alert_rules() if rule["alert"] == name]
    assert REQUIRED_ALERTS[name] <= _check_expr(rule["expr"])


def test_every_alert_expression_parses_and_reads_only_exported_series_the_right_way():
    for rule in _alert_rules():
        _check_expr(rule["expr"])


def test_the_expression_checks_catch_the_usual_mistakes():
    for wrong in (
        "sum(vidgo_stems_jobs)",  # a cluster gauge summed: counts it once per endpoint
        "max(rate(vidgo_stems_jobs_finished_total[5m]))",  # a process counter not summed
        "sum(vidgo_stems_jobs_finished_total)",  # a counter read without rate()
        "max(rate(celery_queue_length[5m]))",  # rate() of a gauge
        "max(vidgo_stems_job)",  # no such metric
        "max by (queue) (celery_queue_length)",  # no such label
        "sum(rate(vidgo_stems_jobs_finished_total[5m])",  # unbalanced
        "histogram_quantile(0.9, sum by (le) (vidgo_stems_poll_lateness_seconds_bucket))",
    ):
        with pytest.raises(AssertionError):
            _check_expr(wrong)


def test_scrape_example_matches_the_ports_and_the_rule_file():
    from worker.cli import main

    config = _load_yaml(PROMETHEUS_SCRAPE.read_text())
    assert config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"])
    metrics_port = Settings.model_fields["metrics_port"].default
    (gateway_port,) = [p.default for p in main.commands["gateway"].params if p.name == "port"]
    ports = {
        name: {
            int(target.rsplit(":", 1)[1])
            for static in job.get("static_configs", [])
            for target in static["targets"]
        }
        | {int(dns["port"]) for dns in job.get("dns_sd_configs", [])}
        for name, job in jobs.items()
    }
    assert ports["vidgo-stems-worker"] == ports["vidgo-stems-compose-worker"] == {metrics_port}
    assert ports["vidgo-stems-gateway"] == {gateway_port}
    # Kubernetes pods: the annotations the manifests carry decide what is scraped, and where.
    pods = jobs["vidgo-stems-pods"]
    relabelled = {
        label for rule in pods["relabel_configs"] for label in rule.get("source_labels", [])
    }
    for annotation in ("scrape", "port", "path"):
        assert f"__meta_kubernetes_pod_annotation_prometheus_io_{annotation}" in relabelled
    for workload in ("worker", "gateway"):
        annotations = _workload(workload)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == (
            metrics_port if workload == "worker" else gateway_port
        )
