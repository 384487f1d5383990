"""Web backends end to end: the gateway, Vidgo callbacks, signed completion webhooks, cancel.

One stack for the module: a private Redis, a real prefork worker whose polls are slow (8 s),
the emulator calling back to a real ``vidgo-stems gateway`` subprocess, and a webhook receiver
on loopback. A callback must make results arrive long before the next poll would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import API_KEY, GatewayProcess, Receiver, Stack
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.webhooks import WebhookVerificationError, verify

pytestmark = pytest.mark.integration

GATEWAY_KEY = "gw-" + secrets.token_hex(16)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
POLL_S = 8.0
#: The web app whose pages call the API and play stems from a browser.
APP_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def web(redis_server, redis_client, emulator, tracks_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("web")
    port = free_port()
    shared = {
        "VIDGO_STEMS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "VIDGO_STEMS_FILE_URL_SECRET": secrets.token_hex(32),
        "VIDGO_STEMS_GATEWAY_API_KEYS": f"old-key-{secrets.token_hex(4)},{GATEWAY_KEY}",
        "VIDGO_STEMS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS": "true",
        "VIDGO_STEMS_WEBHOOK_BACKOFF_BASE_S": "0.3",
        "VIDGO_STEMS_CALLBACK_DEBOUNCE_S": "1.0",
        "VIDGO_STEMS_CORS_ORIGINS": f"{APP_ORIGIN},https://other.example.com",
    }
    stack = Stack(redis_client, redis_server.url, emulator, tracks_url, folder, **shared)
    gateway = GatewayProcess(stack.env, folder / "gateway.log", port=port)
    stack.env.update(
        {
            "VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL": gateway.url,
            "VIDGO_STEMS_CALLBACK_POLL_INITIAL_S": str(POLL_S),
            "VIDGO_STEMS_POLL_MIN_INTERVAL_S": str(POLL_S),
            "VIDGO_STEMS_CALLBACK_POLL_MAX_S": str(POLL_S),
            "VIDGO_STEMS_POLL_JITTER_RATIO": "0.1",
        }
    )
    stack.start_worker(concurrency=2, name="web")
    stack.gateway = gateway
    stack.receiver = Receiver()
    stack.http = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"}, timeout=10
    )
    yield stack
    stack.http.close()
    stack.receiver.close()
    gateway.stop()
    stack.stop()


def test_stem_links_are_served_by_the_gateway_with_ranges_and_refused_when_tampered(web):
    job_id = post_job(web, output_type="vocals")["job_id"]
    view = web.wait_terminal(job_id, timeout_s=POLL_S * 3)
    assert view.state is JobState.DONE, view.error
    read = web.http.get(f"/v1/jobs/{job_id}").json()
    stem = read["stems"]["vocals"]
    assert stem["url"].startswith(f"{web.gateway.url}/v1/files/{job_id}/vocals.")
    assert stem["content_type"] == "audio/mpeg"
    body = httpx.get(stem["url"], timeout=10)  # no bearer key: the link is the credential
    assert body.status_code == 200
    assert hashlib.sha256(body.content).hexdigest() == stem["sha256"]
    assert len(body.content) == stem["bytes"]
    part = httpx.get(stem["url"], headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == body.content[10:20]
    manifest = httpx.get(read["manifest_url"], timeout=10).json()
    assert manifest["job_id"] == job_id and manifest["stems"]["vocals"]["sha256"] == stem["sha256"]
    tampered = stem["url"].replace("sig=", "sig=x")
    refused = httpx.get(tampered, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "url_refused"
    sneaky = stem["url"].replace(f"/v1/files/{job_id}/", f"/v1/files/{job_id}/../")
    assert httpx.get(sneaky, timeout=10).status_code in (403, 404)


def test_a_browser_on_an_allowed_origin_may_call_the_api_and_fetch_stems_with_range(web):
    preflight = httpx.options(
        f"{web.gateway.url}/v1/jobs",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

    job_id = post_job(web, output_type="bass")["job_id"]
    assert web.wait_terminal(job_id, timeout_s=POLL_S * 3).state is JobState.DONE
    read = web.http.get(f"/v1/jobs/{job_id}", headers={"Origin": APP_ORIGIN})
    assert read.headers["access-control-allow-origin"] == APP_ORIGIN
    url = read.json()["stems"]["bass"]["url"]
    ranged = httpx.options(
        url,
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
        timeout=10,
    )
    assert ranged.status_code == 200
    assert "range" in ranged.headers["access-control-allow-headers"].lower()
    part = httpx.get(url, headers={"Origin": APP_ORIGIN, "Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206 and len(part.content) == 100
    assert part.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = part.headers["access-control-expose-headers"].lower()
    assert {"content-range", "content-length", "accept-ranges"} <= set(exposed.split(", "))

    stranger = httpx.get(url, headers={"Origin": "https://evil.example.com"}, timeout=10)
    assert "access-control-allow-origin" not in stranger.headers
    refused = httpx.options(
        f"{web.gateway.url}/v1/jobs",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_the_gateway_counts_requests_by_route_template_status_and_time(web):
    job_id = post_job(web, output_type="piano")["job_id"]
    for _ in range(3):
        assert web.http.get(f"/v1/jobs/{job_id}").status_code == 200
    assert web.http.get("/v1/jobs/no-such-job").status_code == 404
    assert web.http.get("/no/such/route").status_code == 404
    text = web.http.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vidgo_stems_http_request")
    }
    read = 'route="/v1/jobs/{job_id}",status="200"'
    ok = [
        v
        for k, v in samples.items()
        if k.startswith("vidgo_stems_http_requests_total{")
        and 'method="GET"' in k
        and read in k.replace('method="GET",', "")
    ]
    assert ok and ok[0] >= 3, samples
    assert any('route="unmatched"' in k and 'status="404"' in k for k in samples), samples
    assert any(
        k.startswith("vidgo_stems_http_request_duration_seconds_bucket{")
        and 'route="/v1/jobs/{job_id}"' in k
        for k in samples
    )
    assert job_id not in text and "no-such-job" not in text  # templates, never raw paths


def post_job(web, **body) -> dict:
    body.setdefault("audio_url", web.track_url())
    response = web.http.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def history(web, job_id) -> list[dict]:
    return web.ledger.history(job_id)


def first(entries, **match) -> dict:
    return next(e for e in entries if all(e.get(k) == v for k, v in match.items()))


def test_a_callback_starts_the_download_within_a_second_of_the_task_finishing(web):
    job_id = post_job(web, output_type="vocals")["job_id"]
    view = web.wait_terminal(job_id, timeout_s=POLL_S * 3)
    assert view.state is JobState.DONE
    entries = history(web, job_id)
    submitted = first(entries, to="SUBMITTED")["at"]
    woken = first(entries, event="callback")["at"]
    downloading = first(entries, to="DOWNLOADING")["at"]
    (callback,) = [e for e in web.emulator.record("callback") if e["task_id"] == view.vidgo_task_id]
    assert callback["status"] == 200
    assert downloading - woken < 1.0, entries
    assert downloading - callback["at"] < 1.0
    # The countdown poll was still seconds away: the callback, not polling, found the result.
    assert downloading - submitted < POLL_S * 0.9 - 1
    assert view.polls == 1


def test_with_callbacks_dropped_polling_alone_completes_the_job(web):
    with web.emulator.configured(faults={"callback_drop_rate": 1.0}):
        job_id = post_job(web, output_type="drums")["job_id"]
        view = web.wait_terminal(job_id, timeout_s=POLL_S * 4)
    assert view.state is JobState.DONE
    assert not [e for e in history(web, job_id) if e["event"] == "callback"]
    dropped = [e for e in web.emulator.record("callback_dropped")]
    assert view.vidgo_task_id in {e["task_id"] for e in dropped}
    assert (
        first(history(web, job_id), to="DOWNLOADING")["at"]
        - first(history(web, job_id), to="SUBMITTED")["at"]
        >= POLL_S * 0.85
    )


def callback_url(web, job_id, token) -> str:
    return f"{web.gateway.url}/v1/vidgo/callback/{job_id}?token={token}"


def test_a_forged_callback_changes_nothing_and_downloads_nothing(web, tmp_path):
    evil_hits = Receiver()
    try:
        with web.emulator.configured(faults={"never_finish_rate": 1.0}):
            job_id = post_job(web, output_type="bass")["job_id"]
            wait_for(
                lambda: web.job(job_id).state in (JobState.SUBMITTED, JobState.RUNNING),
                timeout_s=20,
                what="the job to be submitted",
            )
        job = web.ledger.get(job_id)
        evil_body = {
            "task_id": job.vidgo_task_id,
            "status": "finished",
            "files": [{"vocal_removal": json.dumps({"bass": f"{evil_hits.url}/steal.wav"})}],
        }
        before = web.ledger.get(job_id)
        for token in ("", "guess", job.callback_token[:-1] + "x"):
            answer = httpx.post(callback_url(web, job_id, token), json=evil_body)
            assert answer.status_code == 404
        assert web.ledger.get(job_id) == before

        answer = httpx.post(callback_url(web, job_id, job.callback_token), json=evil_body)
        assert answer.status_code == 200 and answer.json()["outcome"] == "woken"
        wait_for(
            lambda: web.ledger.get(job_id).polls > before.polls,
            timeout_s=10,
            what="the woken poll to ask Vidgo",
        )
        after = web.job(job_id)
        assert after.state in (JobState.SUBMITTED, JobState.RUNNING)  # Vidgo says: not done
        assert after.stems == {} and web.ledger.get(job_id).stem_urls == {}
        assert evil_hits.requests == []
    finally:
        evil_hits.close()
        web.http.delete(f"/v1/jobs/{job_id}")


def test_duplicate_callbacks_racing_the_countdown_poll_download_once(web):
    # Tasks finish right about when the countdown poll comes, and every callback comes 4 times.
    with web.emulator.configured(
        queue_s=0.2, run_s=POLL_S - 0.6, faults={"callback_duplicates": 3}
    ):
        job_ids = [post_job(web, output_type="general")["job_id"] for _ in range(3)]
        views = web.wait_all(job_ids, timeout_s=POLL_S * 4)
    for view in views:
        assert view.state is JobState.DONE
        downloads = [
            e for e in web.emulator.record("download") if e["task_id"] == view.vidgo_task_id
        ]
        assert sorted(e["stem"] for e in downloads) == sorted(view.stems), downloads
        events = [e["event"] for e in history(web, view.job_id)]
        assert events.count("downloaded") == 1 and events.count("done") == 1
        callbacks = [
            e for e in web.emulator.record("callback") if e["task_id"] == view.vidgo_task_id
        ]
        assert len(callbacks) == 4


def test_webhook_reaches_a_receiver_that_fails_twice_on_the_third_try(web):
    web.receiver.script[:] = [500, 502]
    job_id = post_job(
        web,
        output_type="piano",
        title="Song",
        webhook_url=f"{web.receiver.url}/hooks/stems",
        metadata={"upload_id": 991, "user": "ann"},
    )["job_id"]
    assert web.wait_terminal(job_id, timeout_s=POLL_S * 3).state is JobState.DONE
    got = wait_for(
        lambda: (r := web.receiver.for_job(job_id)) and r[-1]["answered"] == 200 and r,
        timeout_s=30,
        what="the webhook to be delivered",
    )
    assert [r["answered"] for r in got] == [500, 502, 200]
    assert len({r["headers"]["webhook-id"] for r in got}) == 1
    last = got[-1]
    event = verify(WEBHOOK_SECRET, last["body"], last["headers"])
    assert event["type"] == "job.done"
    data = event["data"]
    assert data["job_id"] == job_id and data["metadata"] == {"upload_id": 991, "user": "ann"}
    assert set(data["stems"]) == {"piano"} and len(data["stems"]["piano"]["sha256"]) == 64
    with pytest.raises(WebhookVerificationError):
        verify(WEBHOOK_SECRET, last["body"].replace(b"piano", b"drums"), last["headers"])

    view = web.http.get(f"/v1/jobs/{job_id}").json()
    assert view["webhook"]["status"] == "delivered"
    assert [a["status_code"] for a in view["webhook"]["attempts"]] == [500, 502, 200]


def test_cancel_over_http_stops_the_job_and_tells_the_caller(web):
    with web.emulator.configured(faults={"never_finish_rate": 1.0}):
        job_id = post_job(web, output_type="guitar", webhook_url=f"{web.receiver.url}/c")["job_id"]
        wait_for(lambda: web.job(job_id).vidgo_task_id, timeout_s=20, what="a Vidgo task")
    polls_at_cancel = web.ledger.get(job_id).polls
    cancelled = web.http.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "CANCELLED"
    assert "billed" in cancelled.json()["error"]["message"]
    again = web.http.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409 and "CANCELLED" in again.json()["error"]["message"]
    got = wait_for(lambda: web.receiver.for_job(job_id), timeout_s=20, what="the webhook")
    assert verify(WEBHOOK_SECRET, got[0]["body"], got[0]["headers"])["type"] == "job.cancelled"
    # The poll that waited in the schedule left it with the cancel: Vidgo is asked nothing more.
    assert web.ledger.redis.zscore(web.ledger.keys.schedule, web.ledger.keys.job(job_id)) is None
    time.sleep(POLL_S * 2)
    task_id = web.ledger.get(job_id).vidgo_task_id
    asked = [e for e in web.emulator.record("detail") if e["task_id"] == task_id]
    assert len(asked) == polls_at_cancel == web.ledger.get(job_id).polls


def test_the_jobs_api_answers_bad_requests_with_clear_4xx(web):
    anonymous = httpx.Client(base_url=web.gateway.url, timeout=10)
    try:
        assert (
            anonymous.post("/v1/jobs", json={"audio_url": "https://x.example/a.mp3"}).status_code
            == 401
        )
        wrong = anonymous.get("/v1/jobs/abc", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    finally:
        anonymous.close()
    bad_enum = web.http.post(
        "/v1/jobs", json={"audio_url": "https://x.example/a.mp3", "model_name": "turbo"}
    )
    assert bad_enum.status_code == 422 and "base" in bad_enum.json()["error"]["message"]
    bad_json = web.http.post(
        "/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422
    huge = web.http.post(
        "/v1/jobs", json={"audio_url": "https://x.example/a.mp3", "title": "a" * 100_000}
    )
    assert huge.status_code == 413 and "VIDGO_STEMS_GATEWAY_MAX_BODY_BYTES" in huge.text
    ssrf = web.http.post(
        "/v1/jobs", json={"audio_url": "https://x.example/a.mp3", "webhook_url": "ftp://x/"}
    )
    assert ssrf.status_code == 422 and "webhook_url" in ssrf.json()["error"]["message"]
    for path in ("/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/j%00x", "/v1/jobs/nope"):
        answer = web.http.get(path)
        assert answer.status_code in (404, 422), (path, answer.status_code, answer.text)
    assert web.http.delete("/v1/jobs/nope").status_code == 404


def test_same_request_twice_gives_the_same_job(web):
    body = {"audio_url": web.track_url(), "output_type": "other"}
    first_answer = web.http.post("/v1/jobs", json=body)
    second = web.http.post("/v1/jobs", json={**body, "title": "relabelled"})
    assert (first_answer.status_code, second.status_code) == (202, 200)
    assert first_answer.json()["job_id"] == second.json()["job_id"]
    assert second.json()["created"] is False
    assert second.headers["location"].endswith(f"/v1/jobs/{second.json()['job_id']}")
    web.wait_terminal(second.json()["job_id"], timeout_s=POLL_S * 3)


def test_health_readiness_and_the_openapi_document(web):
    assert web.http.get("/healthz").json() == {"status": "ok"}
    ready = web.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"], ready.text
    document = web.http.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/readyz"} <= set(document["paths"])
    assert "bearer" in json.dumps(document["components"]["securitySchemes"]).lower()


def test_traversal_in_job_ids_titles_and_metadata_never_leaves_the_stems_folder(web):
    hostile = "../../../../tmp/evil"
    assert (
        web.http.post(
            "/v1/jobs", json={"audio_url": web.track_url(), "job_id": hostile}
        ).status_code
        == 422
    )
    job_id = post_job(
        web,
        output_type="vocals",
        title=hostile,
        metadata={"../../x": "../../../etc/passwd", "path": "/etc/shadow"},
    )["job_id"]
    view = web.wait_terminal(job_id, timeout_s=POLL_S * 3)
    assert view.state is JobState.DONE
    root = web.stems_dir.resolve()
    written = [p.resolve() for p in root.rglob("*")]
    assert all(p.is_relative_to(root) for p in written)
    # Hidden files beside them are the storage layer's checksum sidecars; Vidgo's own files
    # stay under original/ until every link to them has expired.
    job_files = sorted(p.name for p in (root / job_id).iterdir() if p.name[0] != ".")
    assert job_files == ["manifest.json", "original", "peaks", "vocals.mp3"]
    assert sorted(p.name for p in (root / job_id / "original").iterdir() if p.name[0] != ".") == [
        "vocals.mp3"
    ]


def test_no_secret_or_callback_token_reaches_any_log(web):
    # Run one more whole job with a webhook, so this test stands on its own.
    job_id = post_job(web, output_type="bass", webhook_url=f"{web.receiver.url}/s")["job_id"]
    web.wait_terminal(job_id, timeout_s=POLL_S * 3)
    wait_for(lambda: web.receiver.for_job(job_id), timeout_s=20, what="the webhook")
    tokens = []
    for key in web.ledger.redis.scan_iter(f"{web.prefix}:job:*"):
        if key.count(b":") == 2:
            job = web.ledger.get(key.decode().rsplit(":", 1)[1])
            if job and job.callback_token:
                tokens.append(job.callback_token)
    assert tokens
    logs = web.gateway.log_path.read_text(errors="replace")
    logs += "".join(p.read_text(errors="replace") for p in web.folder.glob("worker-*.log"))
    assert "/v1/vidgo/callback/" in logs  # the access log is there, and it was read
    for secret in (
        API_KEY,
        GATEWAY_KEY,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        *tokens,
    ):
        assert secret not in logs


@pytest.mark.parametrize("task_name", ["vidgo.enqueue", "vidgo.submit"])
def test_a_backend_without_the_package_enqueues_by_task_name(web, task_name):
    first, second = f"upload-77-{task_name[6:]}", f"upload-78-{task_name[6:]}"
    from celery import Celery

    bare = Celery("some-django-project", broker=web.env["REDIS_URL"])
    try:
        bare.send_task(
            task_name,
            kwargs={
                "audio_url": web.track_url(),
                "output_type": "vocals",
                "job_id": first,
                "metadata": {"row": 77},
            },
            queue=web.queue,
        )
        view = wait_for(lambda: web.job(first), timeout_s=20, what="the job to exist")
        view = web.wait_terminal(first, timeout_s=POLL_S * 3)
        assert view.state is JobState.DONE and view.metadata == {"row": 77}
        # A bad request by name makes no job and leaves a job of the same id untouched.
        bare.send_task(
            task_name,
            kwargs={"audio_url": web.track_url(), "model_name": "turbo", "job_id": first},
            queue=web.queue,
        )
        bare.send_task(
            task_name,
            kwargs={"audio_url": "ftp://nope", "job_id": second},
            queue=web.queue,
        )
        wait_for(
            lambda: (
                f"refused for job {first}" in web.worker_logs()
                and f"refused for job {second}" in web.worker_logs()
            ),
            timeout_s=20,
            what="both refusals in the worker log",
        )
        assert web.job(first).state is JobState.DONE
        assert web.job(second) is None
    finally:
        bare.close()


def readme_example() -> str:
    """The FastAPI example of the docs (example: fastapi), as written."""
    page = (Path(__file__).parents[2] / "docs" / "web-backends.md").read_text()
    after = page.split("<!-- example: fastapi -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_fastapi_example_enqueues_and_receives_a_verified_webhook(web, tmp_path):
    (tmp_path / "readme_app.py").write_text(readme_example())
    port = free_port()
    log_path = tmp_path / "app.log"
    env = {**web.env, "PUBLIC_URL": f"http://127.0.0.1:{port}", "PATH": os.environ["PATH"]}
    del env["VIDGO_API_KEY"]  # a web backend never holds the Vidgo key
    with open(log_path, "wb") as log:
        app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "readme_app:app",
                "--app-dir",
                str(tmp_path),
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"

            def answers():
                assert app.poll() is None, log_path.read_text()
                try:
                    return httpx.get(f"{base}/docs").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(answers, timeout_s=30, what="the README app to start")
            made = httpx.post(
                f"{base}/uploads", params={"audio_url": web.track_url(), "user_id": 5}
            )
            job_id = made.json()["job_id"]
            assert web.wait_terminal(job_id, timeout_s=POLL_S * 3).state is JobState.DONE
            line = wait_for(
                lambda: next(
                    (
                        row
                        for row in log_path.read_text().splitlines()
                        if row.startswith(f"job.done {job_id}")
                    ),
                    None,
                ),
                timeout_s=20,
                what="the app to print the verified event",
            )
            assert "vocals" in line and "sha256" in line
            forged = httpx.post(
                f"{base}/stems-ready",
                content=b'{"type":"job.done"}',
                headers={
                    "webhook-id": "x",
                    "webhook-timestamp": "1",
                    "webhook-signature": "v1,AA==",
                },
            )
            assert forged.status_code == 400
            assert web.job(job_id).metadata == {"user_id": 5}
        finally:
            app.terminate()
            app.wait(timeout=10)
