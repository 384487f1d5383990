"""deploy/compose.yaml, interpolated as Compose would, against the Compose Specification schema
vendored by check-jsonschema (the compose-spec project's schema, Apache-2.0), and what the
production review asks of its services."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import pytest

from tests.deploy.files import COMPOSE_FILE, _image_env, _load_yaml, _needed_stop_s, _seconds
from vidgo_stems.heartbeat import HEARTBEAT_INTERVAL_S
from vidgo_stems.settings import Settings, load_settings

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
