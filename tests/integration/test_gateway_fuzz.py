"""Property-based fuzz of the gateway over real HTTP: no request, however malformed, gets a 5xx.

The gateway here has a queue no worker reads, so fuzzed jobs are stored but never run.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import GatewayProcess
from vidgo_stems.pipeline.ledger import Ledger

pytestmark = pytest.mark.integration

KEY = "fuzz-" + secrets.token_hex(12)


PREFIX = f"vidgo-stems-fuzz-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def gateway(redis_server, tmp_path_factory):
    env = {
        "REDIS_URL": redis_server.url,
        "VIDGO_STEMS_REDIS_KEY_PREFIX": PREFIX,
        "VIDGO_STEMS_QUEUE_NAME": f"vidgo-fuzz-{secrets.token_hex(4)}",
        "VIDGO_STEMS_GATEWAY_API_KEYS": KEY,
        "VIDGO_STEMS_WEBHOOK_SECRET": "whsec_" + "QUFB" * 11,
        "VIDGO_STEMS_GATEWAY_MAX_BODY_BYTES": "4096",
    }
    process = GatewayProcess(env, tmp_path_factory.mktemp("fuzz") / "gateway.log")
    client = httpx.Client(base_url=process.url, timeout=10)
    yield client
    client.close()
    process.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
urls = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "ftp", "file", "javascript", ""]),
        st.sampled_from(
            ["127.0.0.1", "10.0.0.1", "example.com", "[::1]", "a" * 300, "", "x:99999"]
        ),
        st.text(max_size=30),
    ),
)
job_bodies = st.fixed_dictionaries(
    {},
    optional={
        "audio_url": urls,
        "title": st.one_of(st.text(max_size=300), json_values),
        "model_name": st.one_of(st.sampled_from(["base", "enhanced", "instrumental"]), json_values),
        "output_type": st.one_of(st.sampled_from(["general", "vocals", "bass"]), json_values),
        "job_id": st.one_of(st.text(max_size=80), st.sampled_from(["../x", "a/b", "ok-1"])),
        "webhook_url": st.one_of(urls, json_values),
        "metadata": json_values,
        "extra": json_values,
    },
)
# Mostly valid jobs with one odd field, so the enqueue path itself is exercised.
nearly_valid_jobs = st.builds(
    lambda name, extra: {"audio_url": f"https://cdn.example.com/{quote(name)}.mp3", **extra},
    st.text(max_size=20),
    job_bodies.map(lambda body: dict(list(body.items())[:1])),
)
paths = st.one_of(
    st.sampled_from(["/v1/jobs", "/healthz", "/readyz", "/openapi.json", "/", "/v1/jobs/"]),
    st.text(max_size=40).map(lambda t: "/v1/jobs/" + quote(t, safe="")),
    st.tuples(st.text(max_size=40), st.text(max_size=200)).map(
        lambda p: f"/v1/vidgo/callback/{quote(p[0], safe='')}?token={quote(p[1], safe='')}"
    ),
    st.text(max_size=40).map(lambda t: "/" + quote(t, safe="/")),
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=6000),
    json_values.map(lambda v: httpx.Request("POST", "http://x", json=v).content),
    job_bodies.map(lambda v: httpx.Request("POST", "http://x", json=v).content),
    nearly_valid_jobs.map(lambda v: httpx.Request("POST", "http://x", json=v).content),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "authorization": st.sampled_from(
            [f"Bearer {KEY}", "Bearer wrong", "Basic Zm9vOmJhcg==", "Bearer", ""]
        ),
        "content-type": st.sampled_from(
            [
                "application/json",
                "text/plain",
                "multipart/form-data; boundary=x",
                "application/json; charset=latin-1",
                "nonsense",
            ]
        ),
    },
)


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    path=paths,
    body=bodies,
    extra_headers=headers,
    authorised=st.booleans(),
)
def test_no_request_gets_a_5xx(gateway, method, path, body, extra_headers, authorised):
    sent = dict(extra_headers)
    if authorised:
        sent["authorization"] = f"Bearer {KEY}"
    response = gateway.request(method, path, content=body, headers=sent)
    if path == "/readyz" and method == "GET":
        # No worker reads this gateway's queue: "not ready" is the right answer here.
        assert response.json()["error"]["code"] == "no_workers"
        return
    assert response.status_code < 500, (method, path, body, response.status_code, response.text)
    if path.startswith("/v1/jobs") and response.status_code >= 400:
        assert response.json()["error"]["message"]  # every refusal says what was wrong


@settings(max_examples=300, deadline=None, database=None)
@given(body=st.one_of(job_bodies, nearly_valid_jobs))
def test_no_job_body_gets_a_5xx_and_refusals_say_why(gateway, body):
    response = gateway.post("/v1/jobs", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code in (200, 202, 413, 422), (body, response.status_code, response.text)
    if response.status_code in (200, 202):
        job = gateway.get(response.headers["location"], headers={"authorization": f"Bearer {KEY}"})
        assert job.status_code == 200 and job.json()["job_id"] == response.json()["job_id"]
    else:
        assert response.json()["error"]["message"]


@pytest.fixture(scope="module")
def callback_url(gateway, redis_client):
    """A real job's callback URL, with its real token: the body is all the fuzz may vary."""
    created = gateway.post(
        "/v1/jobs",
        json={"audio_url": "https://cdn.example.com/callback-fuzz.mp3"},
        headers={"authorization": f"Bearer {KEY}"},
    ).json()
    job = Ledger(redis_client, prefix=PREFIX).get(created["job_id"])
    return f"/v1/vidgo/callback/{job.job_id}?token={job.callback_token}"


deep_bodies = st.builds(
    lambda n, opener: (opener * n + {"[": "]", "{": "}"}[opener] * n).encode(),
    st.integers(min_value=1, max_value=3000),
    st.sampled_from(["["]),
) | st.builds(lambda n: b'{"a":' * n + b"1" + b"}" * n, st.integers(min_value=1, max_value=2000))
huge_numbers = st.integers(min_value=1, max_value=4000).map(
    lambda n: b'{"task_id": ' + b"9" * n + b', "status": "finished"}'
)


@settings(max_examples=150, deadline=None, database=None)
@given(body=st.one_of(bodies, deep_bodies, huge_numbers, st.binary(max_size=4096)))
def test_the_callback_route_with_a_valid_token_never_answers_5xx(gateway, callback_url, body):
    response = gateway.post(callback_url, content=body)
    assert response.status_code in (200, 413), (body[:100], response.status_code, response.text)
    if response.status_code == 200:
        assert response.json()["ok"] is True
