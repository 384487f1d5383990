"""Request validation at enqueue, fingerprints, job ids and settings errors."""

from __future__ import annotations

import pytest

from vidgo_stems.errors import ConfigError, InvalidRequest
from vidgo_stems.models import parse_request, validate_job_id
from vidgo_stems.settings import load_settings


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.mp3",
        "file:///etc/passwd",
        "example.com/a.mp3",
        "https://",
        "http://exa mple.com/a.mp3",
        "",
    ],
)
def test_bad_audio_urls_are_refused_with_a_reason(url):
    with pytest.raises(InvalidRequest, match="audio_url"):
        parse_request({"audio_url": url})


def test_unknown_model_name_names_the_allowed_values():
    with pytest.raises(
        InvalidRequest, match="model_name 'turbo' is not one of: base, enhanced, instrumental"
    ):
        parse_request({"audio_url": "https://a.example/x.mp3", "model_name": "turbo"})


def test_unknown_output_type_names_the_allowed_values():
    with pytest.raises(
        InvalidRequest,
        match="output_type 'choir' is not one of: general, bass, drums, other, piano, guitar, vocals",
    ):
        parse_request({"audio_url": "https://a.example/x.mp3", "output_type": "choir"})


def test_unknown_fields_are_refused():
    with pytest.raises(InvalidRequest, match="speed"):
        parse_request({"audio_url": "https://a.example/x.mp3", "speed": 2})


def test_fingerprint_ignores_case_of_scheme_and_host_and_the_title():
    a = parse_request({"audio_url": "HTTPS://CDN.Example/Track.mp3", "title": "one"})
    b = parse_request({"audio_url": "https://cdn.example/Track.mp3", "title": "two"})
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_differs_by_path_model_and_output():
    base = parse_request({"audio_url": "https://cdn.example/a.mp3"})
    others = [
        parse_request({"audio_url": "https://cdn.example/A.mp3"}),
        parse_request({"audio_url": "https://cdn.example/a.mp3", "model_name": "enhanced"}),
        parse_request({"audio_url": "https://cdn.example/a.mp3", "output_type": "bass"}),
    ]
    assert len({base.fingerprint(), *(o.fingerprint() for o in others)}) == 4


@pytest.mark.parametrize("job_id", ["../etc", "a/b", ".hidden", "", "x" * 65, "a b", "a\x00b", "é"])
def test_unsafe_job_ids_are_refused(job_id):
    with pytest.raises(InvalidRequest, match="invalid job id"):
        validate_job_id(job_id)


def test_missing_api_key_error_names_the_variable():
    with pytest.raises(ConfigError, match="VIDGO_API_KEY is not set"):
        load_settings().require_api_key()


def test_missing_redis_url_error_names_the_variable():
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        load_settings().require_redis_url()


def test_malformed_setting_names_the_environment_variable(monkeypatch):
    monkeypatch.setenv("VIDGO_STEMS_POLL_INITIAL_S", "soon")
    with pytest.raises(ConfigError, match="VIDGO_STEMS_POLL_INITIAL_S"):
        load_settings()


def test_an_mp3_bitrate_mp3_cannot_write_constant_is_refused_with_the_ones_it_can(monkeypatch):
    monkeypatch.setenv("VIDGO_STEMS_MP3_BITRATE_KBPS", "250")
    with pytest.raises(ConfigError, match=r"VIDGO_STEMS_MP3_BITRATE_KBPS.*224, 256, 320.*not 250"):
        load_settings()


def test_malformed_base_url_names_the_environment_variable(monkeypatch):
    monkeypatch.setenv("VIDGO_BASE_URL", "api.vidgo.ai")
    with pytest.raises(ConfigError, match="VIDGO_BASE_URL"):
        load_settings()


def test_settings_read_conventional_names_and_keep_the_key_secret(monkeypatch):
    monkeypatch.setenv("VIDGO_API_KEY", "sk-abc")
    monkeypatch.setenv("REDIS_URL", "redis://h:1/0")
    monkeypatch.setenv("VIDGO_STEMS_ALLOWED_STEM_HOSTS", "a.example, B.example")
    settings = load_settings()
    assert settings.require_api_key().get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(settings)
    assert settings.stem_hosts == {"a.example", "b.example", "api.vidgo.ai"}


def test_a_public_base_url_without_the_file_secret_refuses_rather_than_hand_out_paths():
    with pytest.raises(ConfigError, match="VIDGO_STEMS_FILE_URL_SECRET is not") as caught:
        load_settings(public_base_url="https://stems.example.com")
    assert "\n" not in caught.value.message
    # Object storage signs its own links: no file secret is needed there.
    assert load_settings(
        public_base_url="https://stems.example.com", storage_url="s3://bucket/prefix"
    ).public_base_url


def test_a_durable_timeout_that_does_not_fit_twice_in_a_stage_is_refused():
    with pytest.raises(ConfigError, match="less than half of VIDGO_STEMS_TASK_SOFT") as caught:
        load_settings(
            redis_durable_replicas=1, redis_durable_timeout_s=30, task_soft_time_limit_s=60
        )
    assert "\n" not in caught.value.message
    # Without durable writes the timeout is not used.
    assert load_settings(redis_durable_timeout_s=30, task_soft_time_limit_s=60)


@pytest.mark.parametrize(
    "value", ["https://app.example.com/path", "app.example.com", "ftp://x.example.com", "https://"]
)
def test_cors_origins_must_be_origins(value):
    with pytest.raises(ConfigError, match="is not an origin"):
        load_settings(cors_origins=value)


def test_cors_origins_are_a_comma_separated_list():
    settings = load_settings(cors_origins="https://app.example.com, http://localhost:3000/")
    assert settings.cors_origins == ["https://app.example.com", "http://localhost:3000"]
    assert load_settings(cors_origins="*").cors_origins == ["*"]
