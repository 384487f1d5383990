"""The gateway fuzzed from its own OpenAPI document (schemathesis) over real HTTP, with a real
Redis and a real worker behind it: no request, with or without a key, gets a 5xx, an answer
that breaks the document, or an answer holding a secret.

Examples per operation are bounded (``FUZZ_EXAMPLES``) so the suite stays short; set
``VIDGO_STEMS_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import base64
import os
import secrets

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import API_KEY, GatewayProcess, Stack

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("VIDGO_STEMS_FUZZ_EXAMPLES", "30"))
KEY = "fuzz-" + secrets.token_hex(16)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
FILE_SECRET = secrets.token_hex(32)
#: Nothing the gateway answers may hold any of these.
SECRETS = (KEY, WEBHOOK_SECRET, FILE_SECRET, API_KEY)


@pytest.fixture(scope="module")
def fuzzed_gateway(redis_server, redis_client, emulator, tracks_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("openapi-fuzz")
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        folder,
        VIDGO_STEMS_GATEWAY_API_KEYS=KEY,
        VIDGO_STEMS_WEBHOOK_SECRET=WEBHOOK_SECRET,
        VIDGO_STEMS_FILE_URL_SECRET=FILE_SECRET,
        VIDGO_STEMS_GATEWAY_MAX_BODY_BYTES="8192",
    )
    gateway = GatewayProcess(stack.env, folder / "gateway.log")
    stack.env["VIDGO_STEMS_PUBLIC_BASE_URL"] = gateway.url
    stack.start_worker(concurrency=1, name="fuzz")
    yield gateway
    gateway.stop()
    stack.stop()
    log = (folder / "gateway.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    for secret in SECRETS:
        assert secret not in log


def _operations(gateway: GatewayProcess):
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    return operations


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def _no_secret_in(response) -> None:
    answer = response.content.decode("utf-8", "replace") + str(dict(response.headers))
    leaked = [s[:8] + "…" for s in SECRETS if s in answer]
    assert not leaked, f"an answer holds a secret: {leaked}"


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_with_a_key_nothing_is_a_5xx_breaks_the_document_or_leaks(fuzzed_gateway, mode):
    fuzzed = []
    for operation in _operations(fuzzed_gateway):

        @FUZZ
        @given(case=operation.as_strategy(mode))
        def call(case):
            response = case.call(
                base_url=fuzzed_gateway.url,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            )
            if mode is GenerationMode.POSITIVE:
                case.validate_response(response, checks=CHECKS)
            else:
                case.validate_response(response, checks=[not_a_server_error])
            _no_secret_in(response)

        try:
            call()
        except Unsatisfiable:
            # An operation that takes no input has no invalid input to send.
            assert mode is GenerationMode.NEGATIVE and not operation.path.startswith("/v1/")
            continue
        fuzzed.append(operation.label)
    assert any(label.startswith("POST /v1/jobs") for label in fuzzed), fuzzed


def test_without_a_key_nothing_is_a_5xx_or_leaks(fuzzed_gateway):
    for operation in _operations(fuzzed_gateway):

        @FUZZ
        @given(case=operation.as_strategy())
        def call(case):
            response = case.call(base_url=fuzzed_gateway.url, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])
            _no_secret_in(response)
            if case.path.startswith("/v1/jobs"):
                assert response.status_code == 401, (case.method, case.path, response.status_code)

        call()
