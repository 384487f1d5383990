"""Reading the deployment files in deploy/ for the checks in this package: paths, a strict YAML
loader, the Kubernetes documents and their workloads, the Dockerfile's instructions, and the
stop time a warm shutdown needs."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vidgo_stems.celeryconfig import celery_config
from vidgo_stems.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
WORKER_UNIT = DEPLOY / "systemd" / "vidgo-stems-worker.service"
GATEWAY_UNIT = DEPLOY / "systemd" / "vidgo-stems-gateway.service"

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
IMAGE_UID = 10001


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
