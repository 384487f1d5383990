"""VidgoClient against httpx.MockTransport: requests as sent, answers as parsed."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from vidgo_stems import errors
from vidgo_stems.models import parse_request
from vidgo_stems.vidgo import VidgoClient, VidgoStatus


def client_for(make_settings, handler):
    return VidgoClient(make_settings(), transport=httpx.MockTransport(handler))


def ok(data):
    return httpx.Response(200, json={"code": 200, "data": data})


def test_submit_sends_the_documented_body_and_bearer_key(make_settings):
    seen = {}

    def handler(request):
        seen["auth"] = request.headers["authorization"]
        seen["path"] = request.url.path
        seen["body"] = json.loads(request.content)
        return ok(
            {
                "task_id": "task-unified-1-abcdefgh",
                "status": "not_started",
                "created_time": "2025-11-12T10:30:00",
            }
        )

    request = parse_request(
        {
            "audio_url": "https://cdn.example/a.mp3",
            "title": "A",
            "model_name": "enhanced",
            "output_type": "vocals",
        }
    )
    with client_for(make_settings, handler) as client:
        result = client.submit(request)
    assert result.task_id == "task-unified-1-abcdefgh"
    assert seen["auth"] == "Bearer test-key-123"
    assert seen["path"] == "/api/generate/submit"
    assert seen["body"] == {
        "model": "upload-and-separate-vocals",
        "input": {
            "audio_url": "https://cdn.example/a.mp3",
            "title": "A",
            "model_name": "enhanced",
            "output_type": "vocals",
        },
    }


def test_submit_sends_callback_url_only_when_given(make_settings):
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return ok({"task_id": "t"})

    request = parse_request({"audio_url": "https://cdn.example/a.mp3"})
    with client_for(make_settings, handler) as client:
        client.submit(request)
        client.submit(request, callback_url="https://hooks.example/cb?token=x")
    assert "callback_url" not in bodies[0]
    assert bodies[1]["callback_url"] == "https://hooks.example/cb?token=x"


def test_music_detail_puts_task_id_in_the_query(make_settings):
    def handler(request):
        assert request.url.path == "/api/generate/detail/music"
        assert request.url.params["task_id"] == "a b/c"
        return ok({"task_id": "a b/c", "status": "running", "files": []})

    with client_for(make_settings, handler) as client:
        assert client.music_detail("a b/c").status is VidgoStatus.RUNNING


def test_task_status_encodes_the_id_in_the_path(make_settings):
    def handler(request):
        assert request.url.raw_path == b"/api/generate/status/a%20b%2Fc"
        return ok({"task_id": "a b/c", "status": "running", "files": [], "progress": 45})

    with client_for(make_settings, handler) as client:
        assert client.task_status("a b/c").progress == 45


def test_balance_reads_credits(make_settings):
    with client_for(make_settings, lambda r: ok({"email": "e", "credits_amount": 17276})) as client:
        assert client.balance() == 17276


def test_http_200_with_an_error_code_in_the_body_is_an_error(make_settings):
    body = {
        "code": 402,
        "error": {"message": "Insufficient credits", "type": "insufficient_credits_error"},
    }
    with (
        client_for(make_settings, lambda r: httpx.Response(200, json=body)) as client,
        pytest.raises(errors.VidgoCreditsError, match="Insufficient credits"),
    ):
        client.balance()


def test_non_json_200_is_a_protocol_error(make_settings):
    with (
        client_for(make_settings, lambda r: httpx.Response(200, text="<html>")) as client,
        pytest.raises(errors.VidgoProtocolError, match="not JSON"),
    ):
        client.music_detail("t")


def test_non_json_error_body_still_maps_by_status(make_settings):
    with (
        client_for(make_settings, lambda r: httpx.Response(503, text="busy")) as client,
        pytest.raises(errors.VidgoUnavailable, match="busy"),
    ):
        client.music_detail("t")


def test_detail_error_shape_404(make_settings):
    with (
        client_for(
            make_settings, lambda r: httpx.Response(404, json={"detail": "Task not found"})
        ) as c,
        pytest.raises(errors.VidgoTaskNotFound, match="Task not found"),
    ):
        c.task_status("t")


def test_transport_failure_is_translated(make_settings):
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    with (
        client_for(make_settings, handler) as client,
        pytest.raises(errors.VidgoTransportError) as caught,
    ):
        client.submit(parse_request({"audio_url": "https://cdn.example/a.mp3"}))
    assert caught.value.maybe_processed


def test_the_key_never_appears_in_reprs_errors_or_logs(make_settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings = make_settings(vidgo_api_key="sk-super-secret")
    client = VidgoClient(
        settings,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(
                401, json={"code": 401, "error": {"message": "Invalid API key"}}
            )
        ),
    )
    with pytest.raises(errors.VidgoAuthError) as caught:
        client.balance()
    client.close()
    for text in (
        repr(client),
        repr(settings),
        str(settings.model_dump()),
        str(caught.value),
        caplog.text,
    ):
        assert "sk-super-secret" not in text
