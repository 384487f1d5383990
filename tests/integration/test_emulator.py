"""The emulator answers as Vidgo's documents say: shapes, errors, timeline, storage, callbacks."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from vidgo_stems.emulator import EmulatorConfig, audio
from vidgo_stems.emulator.server import BackgroundEmulator
from vidgo_stems.devstack import tracks
from vidgo_stems.devstack.local import FileServer, wait_for
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.models import ALL_STEMS
from vidgo_stems.vidgo.parse import extract_stem_urls, parse_detail

AUTH = {"Authorization": "Bearer k"}


def running_emulator(**config):
    settings = {
        "api_key": "k",
        "queue_s": 0.05,
        "run_s": 0.1,
        "synth_duration_s": 0.2,
        "sample_rate": 8000,
        **config,
    }
    return BackgroundEmulator(EmulatorConfig(**settings), free_port())


@pytest.fixture
def emu():
    with running_emulator() as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def submit(client, **inputs):
    body = {
        "model": "upload-and-separate-vocals",
        "input": {"audio_url": "http://127.0.0.1:9/unreachable.mp3", **inputs},
    }
    return client.post("/api/generate/submit", json=body, headers=AUTH)


def finished(client, task_id):
    def check():
        data = client.get(
            "/api/generate/detail/music", params={"task_id": task_id}, headers=AUTH
        ).json()
        return data if data["data"]["status"] == "finished" else None

    return wait_for(check, timeout_s=10, interval_s=0.02, what="the emulated task to finish")


def test_submit_answers_with_a_task_id_and_not_started(emu):
    answer = submit(emu).json()
    assert answer["code"] == 200
    assert answer["data"]["status"] == "not_started"
    assert answer["data"]["task_id"].startswith("task-unified-")
    assert "T" in answer["data"]["created_time"] and "+" not in answer["data"]["created_time"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k"}]
)
def test_requests_without_the_key_get_401_in_the_error_envelope(emu, headers):
    answer = emu.get("/api/user/balance", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 401,
        "error": {"message": "Invalid API key", "type": "authentication_error"},
    }


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"model_name": "turbo"}, "model_name"),
        ({"output_type": "choir"}, "output_type"),
        ({"audio_url": "ftp://x/a.mp3"}, "audio_url"),
    ],
)
def test_submit_validation_errors(emu, inputs, needle):
    answer = submit(emu, **inputs)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "validation_error"
    assert needle in answer.json()["error"]["message"]


def test_strict_mode_requires_a_public_https_callback(emu):
    emu.post("/_emulator/config", json={"strict_callback_url": True})
    assert "required" in submit(emu).json()["error"]["message"]
    body = {
        "model": "upload-and-separate-vocals",
        "callback_url": "http://10.0.0.1/cb",
        "input": {"audio_url": "https://a.example/x.mp3"},
    }
    assert emu.post("/api/generate/submit", json=body, headers=AUTH).status_code == 400


def test_unknown_task_ids_get_404_in_each_endpoints_shape(emu):
    detail = emu.get("/api/generate/detail/music", params={"task_id": "nope"}, headers=AUTH)
    status = emu.get("/api/generate/status/nope", headers=AUTH)
    assert detail.status_code == status.status_code == 404
    assert detail.json()["error"]["type"] == "resource_not_found_error"
    assert status.json() == {"detail": "Task not found"}


def test_timeline_and_vocal_removal_as_a_json_string(emu):
    task_id = submit(emu, output_type="general").json()["data"]["task_id"]
    first = emu.get("/api/generate/detail/music", params={"task_id": task_id}, headers=AUTH).json()
    assert first["data"]["status"] in ("not_started", "running")
    assert first["data"]["files"] == []
    done = finished(emu, task_id)
    [item] = done["data"]["files"]
    assert isinstance(item["vocal_removal"], str)
    urls = extract_stem_urls(parse_detail(done).files, ALL_STEMS).urls
    assert set(urls) == set(ALL_STEMS)
    assert done["data"]["error_message"] is None


def test_single_stem_output_type_returns_one_key(emu):
    task_id = submit(emu, output_type="drums").json()["data"]["task_id"]
    item = finished(emu, task_id)["data"]["files"][0]
    assert list(json.loads(item["vocal_removal"])) == ["drums"]


def test_status_endpoint_has_progress_and_no_file_urls(emu):
    task_id = submit(emu).json()["data"]["task_id"]
    finished(emu, task_id)
    data = emu.get(f"/api/generate/status/{task_id}", headers=AUTH).json()["data"]
    assert data["progress"] == 100 and data["files"] == []


def test_stems_are_served_whole_and_by_range_and_recorded(emu):
    task_id = submit(emu, output_type="bass").json()["data"]["task_id"]
    item = finished(emu, task_id)["data"]["files"][0]
    assert json.loads(item["vocal_removal"])["bass"].split("?")[0].endswith("/bass.mp3")
    whole = emu.get(f"/storage/{task_id}/bass.mp3")
    part = emu.get(f"/storage/{task_id}/bass.mp3", headers={"Range": "bytes=10-19"})
    tail = emu.get(f"/storage/{task_id}/bass.mp3", headers={"Range": "bytes=-5"})
    # An MP3 frame header: 11 sync bits, as Vidgo serves stems.
    assert whole.status_code == 200 and whole.content[0] == 0xFF and whole.content[1] >> 5 == 7
    assert whole.headers["content-type"] == "audio/mpeg"
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(whole.content)}"
    assert tail.content == whole.content[-5:]
    assert (
        emu.get(f"/storage/{task_id}/bass.mp3", headers={"Range": "bytes=99999999-"}).status_code
        == 416
    )
    sha = emu.get("/_emulator/tasks").json()[task_id]["sha256"]["bass"]
    assert sha == hashlib.sha256(whole.content).hexdigest()
    downloads = emu.get("/_emulator/record", params={"kind": "download"}).json()
    assert [d["status"] for d in downloads] == [200, 206, 206]


def test_stem_urls_expire(emu):
    emu.post("/_emulator/config", json={"stem_ttl_s": 0.0})
    task_id = submit(emu, output_type="bass").json()["data"]["task_id"]
    finished(emu, task_id)
    assert emu.get(f"/storage/{task_id}/bass.mp3").status_code == 410


def test_injected_faults_use_the_documented_shapes(emu):
    emu.post("/_emulator/config", json={"faults": {"rate_429": 1.0, "retry_after_s": 3}})
    answer = emu.get("/api/user/balance", headers=AUTH)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["type"] == "rate_limit_error"
    emu.post(
        "/_emulator/config",
        json={"faults": {"rate_429": 0.0, "rate_5xx": 1.0, "status_5xx": [502]}},
    )
    assert emu.get("/api/user/balance", headers=AUTH).status_code == 502


def test_balance_is_charged_per_submission(emu):
    before = emu.get("/api/user/balance", headers=AUTH).json()["data"]["credits_amount"]
    submit(emu)
    after = emu.get("/api/user/balance", headers=AUTH).json()["data"]["credits_amount"]
    assert before - after == 2


def test_stems_derive_from_a_fetchable_input(emu, tmp_path):
    tracks.write_track(tmp_path / "groove.wav", "groove", seconds=0.5, rate=8000)
    with FileServer(tmp_path) as files:
        task_id = submit(emu, output_type="bass", audio_url=f"{files.url}/groove.wav").json()[
            "data"
        ]["task_id"]
        finished(emu, task_id)
    assert emu.get("/_emulator/tasks").json()[task_id]["stem_source"] == "input"


def test_unreachable_input_falls_back_to_synthesised_stems(emu):
    task_id = submit(emu, output_type="vocals").json()["data"]["task_id"]
    finished(emu, task_id)
    assert emu.get("/_emulator/tasks").json()[task_id]["stem_source"] == "synthesised"


class Receiver:
    """A callback receiver on a free port that records every POST body."""

    def __init__(self):
        self.bodies = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cb?token=x"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("shape", ["flat", "wrapped"])
def test_callbacks_are_sent_in_the_configured_shape(shape):
    receiver = Receiver()
    try:
        with (
            running_emulator(callback_shape=shape) as server,
            httpx.Client(base_url=server.url) as client,
        ):
            body = {
                "model": "upload-and-separate-vocals",
                "callback_url": receiver.url,
                "input": {"audio_url": "http://127.0.0.1:9/x.mp3", "output_type": "vocals"},
            }
            client.post("/api/generate/submit", json=body, headers=AUTH)
            wait_for(lambda: receiver.bodies, timeout_s=10, interval_s=0.02, what="a callback")
            # The emulator records a callback once the receiver has answered it.
            record = wait_for(
                lambda: client.get("/_emulator/record", params={"kind": "callback"}).json(),
                timeout_s=10,
                interval_s=0.02,
                what="the callback in the emulator's record",
            )
    finally:
        receiver.close()
    first = receiver.bodies[0]
    data = first["data"] if shape == "wrapped" else first
    assert ("code" in first) is (shape == "wrapped")
    assert data["status"] == "finished"
    assert "vocal_removal" in data["files"][0]
    assert record[0]["status"] == 200 and record[0]["shape"] == shape


def test_a_cut_answer_is_processed_but_arrives_incomplete(emu):
    emu.post("/_emulator/config", json={"faults": {"rate_cut": 1.0, "endpoints": ["submit"]}})
    with pytest.raises(httpx.RemoteProtocolError):
        submit(emu)
    assert len(emu.get("/_emulator/record", params={"kind": "submit"}).json()) == 1
    [fault] = emu.get("/_emulator/record", params={"kind": "fault"}).json()
    assert (fault["endpoint"], fault["fault"]) == ("submit", "cut")


def test_a_slow_answer_is_processed_but_outlasts_the_client(emu):
    emu.post(
        "/_emulator/config",
        json={"faults": {"rate_slow": 1.0, "slow_s": 2, "endpoints": ["submit"]}},
    )
    with pytest.raises(httpx.ReadTimeout):
        emu.post(
            "/api/generate/submit",
            headers=AUTH,
            timeout=0.3,
            json={
                "model": "upload-and-separate-vocals",
                "input": {"audio_url": "http://127.0.0.1:9/a.mp3"},
            },
        )
    assert len(emu.get("/_emulator/record", params={"kind": "submit"}).json()) == 1


def test_refused_answers_create_nothing(emu):
    emu.post("/_emulator/config", json={"faults": {"rate_5xx": 1.0, "endpoints": ["submit"]}})
    assert submit(emu).status_code in (500, 502, 503)
    assert emu.get("/_emulator/record", params={"kind": "submit"}).json() == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("task_reject_rate", "The audio violates our content policy"),
        ("task_fail_rate", "Audio separation failed, please try again"),
    ],
)
def test_failed_tasks_carry_the_configured_message(emu, fault, message):
    emu.post("/_emulator/config", json={"faults": {fault: 1.0}})
    task_id = submit(emu).json()["data"]["task_id"]

    def failed():
        data = emu.get(
            "/api/generate/detail/music", params={"task_id": task_id}, headers=AUTH
        ).json()["data"]
        return data if data["status"] == "failed" else None

    data = wait_for(failed, timeout_s=10, interval_s=0.02, what="the task to fail")
    assert data["error_message"] == message and data["files"] == []


def test_a_never_finishing_task_stays_running(emu):
    emu.post("/_emulator/config", json={"faults": {"never_finish_rate": 1.0}})
    task_id = submit(emu).json()["data"]["task_id"]
    wait_for(
        lambda: (
            emu.get("/api/generate/detail/music", params={"task_id": task_id}, headers=AUTH).json()[
                "data"
            ]["status"]
            == "running"
        ),
        timeout_s=10,
    )
    assert emu.get("/_emulator/tasks").json()[task_id]["status"] == "running"


def test_an_expired_stem_url_is_replaced_by_a_fresh_one(emu):
    emu.post("/_emulator/config", json={"faults": {"download_expire_rate": 1.0}})
    task_id = submit(emu, output_type="bass").json()["data"]["task_id"]
    old = json.loads(finished(emu, task_id)["data"]["files"][0]["vocal_removal"])["bass"]
    assert emu.get(old).status_code == 410
    emu.post("/_emulator/config", json={"faults": {"download_expire_rate": 0.0}})
    fresh = json.loads(finished(emu, task_id)["data"]["files"][0]["vocal_removal"])["bass"]
    assert fresh != old
    assert emu.get(old).status_code == 410
    assert emu.get(fresh).status_code == 200


def test_a_cut_download_breaks_mid_body(emu):
    task_id = submit(emu, output_type="bass").json()["data"]["task_id"]
    url = json.loads(finished(emu, task_id)["data"]["files"][0]["vocal_removal"])["bass"]
    emu.post("/_emulator/config", json={"faults": {"download_cut_rate": 1.0}})
    with pytest.raises(httpx.RemoteProtocolError):
        emu.get(url)


def test_duplicate_callbacks_are_sent():
    receiver = Receiver()
    try:
        with running_emulator() as server, httpx.Client(base_url=server.url) as client:
            client.post("/_emulator/config", json={"faults": {"callback_duplicates": 2}})
            client.post(
                "/api/generate/submit",
                headers=AUTH,
                json={
                    "model": "upload-and-separate-vocals",
                    "callback_url": receiver.url,
                    "input": {"audio_url": "http://127.0.0.1:9/x.mp3", "output_type": "vocals"},
                },
            )
            wait_for(
                lambda: len(receiver.bodies) == 3, timeout_s=10, interval_s=0.02, what="3 callbacks"
            )
    finally:
        receiver.close()
    assert receiver.bodies[0] == receiver.bodies[1] == receiver.bodies[2]


def stems_of(client, task_id):
    """The finished task's stems, downloaded from the URLs its detail lists."""
    [item] = finished(client, task_id)["data"]["files"]
    urls = json.loads(item["vocal_removal"])
    downloads = {name.strip(): client.get(url) for name, url in urls.items()}
    assert all(response.status_code == 200 for response in downloads.values())
    return {name: response.content for name, response in downloads.items()}


@pytest.fixture
def track_url(tmp_path):
    tracks.write_track(tmp_path / "groove.wav", "groove", seconds=1.0, rate=8000)
    tracks.write_track(tmp_path / "ballad.wav", "ballad", seconds=1.0, rate=8000)
    with FileServer(tmp_path) as files:
        yield lambda name="groove": f"{files.url}/{name}.wav"


def test_a_second_task_of_the_same_source_is_served_from_the_stem_cache(emu, track_url):
    first = submit(emu, audio_url=track_url()).json()["data"]["task_id"]
    first_stems = stems_of(emu, first)
    second = submit(emu, audio_url=track_url()).json()["data"]["task_id"]
    assert stems_of(emu, second) == first_stems
    tasks = emu.get("/_emulator/tasks").json()
    assert [tasks[t]["stem_cache"] for t in (first, second)] == ["miss", "hit"]
    assert tasks[first]["sha256"] == tasks[second]["sha256"]
    stats = emu.get("/_emulator/cache").json()
    assert (stats["renders"], stats["misses"], stats["hits"], stats["entries"]) == (1, 1, 1, 1)
    # Tasks of one source submitted together render it once.
    together = [submit(emu, audio_url=track_url("ballad")).json()["data"]["task_id"] for _ in "abc"]
    assert all(stems_of(emu, t) == stems_of(emu, together[0]) for t in together)
    assert emu.get("/_emulator/cache").json()["renders"] == 2


def test_the_stem_cache_does_not_confuse_parameters(emu, track_url):
    def run(name="groove", **inputs):
        task_id = submit(emu, audio_url=track_url(name), **inputs).json()["data"]["task_id"]
        return stems_of(emu, task_id), emu.get("/_emulator/tasks").json()[task_id]["stem_cache"]

    base, how = run()
    variants = {
        "source": run("ballad"),
        "model": run(model_name="enhanced"),
        "output type": run(output_type="vocals"),
    }
    emu.post("/_emulator/config", json={"stem_format": "wav"})
    variants["format"] = run()
    emu.post("/_emulator/config", json={"stem_format": "mp3", "faults": {"lost_stems": ["bass"]}})
    variants["lost stem"] = run()
    emu.post("/_emulator/config", json={"faults": {"lost_stems": []}})
    assert how == "miss" and all(h == "miss" for _, h in variants.values())
    assert emu.get("/_emulator/cache").json()["renders"] == 6
    assert variants["source"][0]["vocals"] != base["vocals"]
    assert variants["model"][0]["vocals"] != base["vocals"]
    assert list(variants["output type"][0]) == ["vocals"]
    assert variants["format"][0]["vocals"][:4] == b"RIFF"
    assert variants["lost stem"][0]["bass"] != base["bass"]
    assert variants["lost stem"][0]["vocals"] == base["vocals"]
    assert run() == (base, "hit")


def test_turned_off_the_stem_cache_renders_every_task(emu, track_url):
    emu.post("/_emulator/config", json={"stem_cache_bytes": 0})
    tasks = [submit(emu, audio_url=track_url()).json()["data"]["task_id"] for _ in "ab"]
    assert stems_of(emu, tasks[0]) == stems_of(emu, tasks[1])
    assert emu.get("/_emulator/cache").json()["renders"] == 2


def test_stems_are_rendered_before_the_task_reports_finished(emu, track_url, monkeypatch):
    """The render belongs to ``running``: once a client sees ``finished``, every stem is there
    to download and nothing is left to make."""
    rendered_at = []
    split = audio.split

    def slow_split(*args, **kwargs):
        time.sleep(0.5)
        stems = split(*args, **kwargs)
        rendered_at.append(time.monotonic())
        return stems

    monkeypatch.setattr(audio, "split", slow_split)
    emu.post("/_emulator/config", json={"queue_s": 0.0, "run_s": 0.0})
    task_id = submit(emu, audio_url=track_url()).json()["data"]["task_id"]
    seen = []
    while not seen or seen[-1] != "finished":
        data = emu.get("/api/generate/detail/music", params={"task_id": task_id}, headers=AUTH)
        seen.append(data.json()["data"]["status"])
        assert len(seen) < 2000, "the task never finished"
        time.sleep(0.01)
    assert "running" in seen and len(rendered_at) == 1 and rendered_at[0] < time.monotonic()
    assert emu.get("/_emulator/cache").json()["renders"] == 1
    assert set(stems_of(emu, task_id)) == set(ALL_STEMS)
    assert emu.get("/_emulator/cache").json()["renders"] == 1
