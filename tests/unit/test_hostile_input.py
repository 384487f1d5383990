"""Hostile input, second pass: each case here once crashed a parser, slipped past a guard, or
answered with a traceback; each now gets a clear refusal and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.jobs import job_in
from tests.steps import StepLog
from vidgo_stems.batch.catalog import check_catalog
from vidgo_stems.errors import CatalogError, ConfigError, InvalidRequest, StemHostNotAllowed
from vidgo_stems.jsonsafe import JsonLimits, JsonRefused, loads, nesting_depth
from vidgo_stems.models import parse_request
from vidgo_stems.pipeline.states import JobState
from vidgo_stems.settings import Settings, load_settings
from vidgo_stems.urlsafety import AddressPolicy, check_stem_url, check_webhook_url, is_public
from vidgo_stems.web.callbacks import CallbackOutcome, callback_hint, handle_callback

DEEP = b"[" * 1000 + b"]" * 1000
DEEPER = "[" * 100_000 + "]" * 100_000

# -- the bounded JSON parser ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (DEEPER, r"nested 100000 levels deep; the limit is 32 \(VIDGO_STEMS_MAX_JSON_DEPTH\)"),
        ('{"n": ' + "9" * 5000 + "}", r"integer of 5000 digits.*VIDGO_STEMS_MAX_JSON_INT_DIGITS"),
        ('{"n": -' + "9" * 41 + "}", r"integer of 41 digits"),
        (b"\xff\xfe{}", r"not UTF-8 text \(bad byte at offset 0\)"),
        ('{"a": 1,}', r"not valid JSON \(.* at line 1 column 9\)"),
        ("", r"not valid JSON"),
    ],
)
def test_json_from_outside_is_refused_with_the_reason_and_the_setting(text, match):
    with pytest.raises(JsonRefused, match=match):
        loads(text)


def test_json_within_the_limits_parses_and_brackets_in_strings_do_not_count():
    assert loads('{"a": "[[[[{{{{", "b": [[1]], "n": ' + "9" * 40 + "}") == {
        "a": "[[[[{{{{",
        "b": [[1]],
        "n": int("9" * 40),
    }
    assert nesting_depth('["\\"[[[", [{"x": []}]]') == 4
    assert loads("[" * 5 + "]" * 5, JsonLimits(max_depth=5)) == [[[[[]]]]]


# -- 1. callbacks: a valid token with a body nested 1,000 deep -----------------------------


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.SUBMITTED, JobState.FAILED])
def test_a_deep_callback_body_with_the_real_token_is_handled_in_every_state(fake_ledger, state):
    ledger = fake_ledger
    job_in(ledger, state)
    token = ledger.get("j1").callback_token
    outcome = handle_callback(ledger, "j1", token, DEEP)
    sent = StepLog(ledger.redis, "t")
    expected = CallbackOutcome.WOKEN if state is JobState.SUBMITTED else CallbackOutcome.IGNORED
    assert outcome is expected
    assert len(sent) == (1 if state is JobState.SUBMITTED else 0)


def test_a_callback_hint_never_raises_for_deep_huge_or_broken_bodies():
    for body in (DEEP, DEEPER.encode(), b'{"task_id": ' + b"1" * 5000 + b"}", b"\xff", b"{"):
        assert callback_hint(body) == {"body": "unparsable"}


# -- 2. catalogs ---------------------------------------------------------------------------


def test_catalog_rows_with_huge_integers_or_deep_nesting_are_row_problems(tmp_path):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(
        '{"audio_url": "https://cdn.example/1.mp3", "n": '
        + "9" * 5000
        + "}\n"
        + DEEPER
        + "\n"
        + '{"audio_url": "https://cdn.example/2.mp3"}\n'
    )
    check = check_catalog(catalog)
    assert check.valid == 1
    assert [(p.line, p.reason[:30]) for p in check.problems] == [
        (1, "holds an integer of 5000 digit"),
        (2, "nested 100000 levels deep; the"),
    ]


def test_a_missing_catalog_is_a_clear_error_not_a_traceback(tmp_path):
    with pytest.raises(CatalogError, match=r"cannot read the catalog .*nope\.csv: No such file"):
        check_catalog(tmp_path / "nope.csv")


def test_invalid_utf8_in_a_csv_header_is_reported(tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(b"audio_url,ti\xfftle\nhttps://cdn.example/1.mp3,x\n")
    with pytest.raises(CatalogError, match=r"line 1: the header is not valid UTF-8"):
        check_catalog(catalog)


# -- 3. SSRF through IPv6 forms that embed IPv4, and legacy IPv4 spellings -----------------


@pytest.mark.parametrize(
    "address",
    ["::127.0.0.1", "64:ff9b::127.0.0.1", "64:ff9b::10.0.0.1", "2002:7f00:1::", "2002:a00:1::"],
)
def test_ipv6_addresses_carrying_a_private_ipv4_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", ["64:ff9b::8.8.8.8", "2606:4700::1111"])
def test_ipv6_addresses_carrying_a_public_ipv4_or_none_are_public(address):
    assert is_public(address)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::127.0.0.1]/", "private address"),
        ("http://[64:ff9b::127.0.0.1]/", "private address"),
        ("http://[2002:7f00:1::]/", "private address"),
        ("http://[::ffff:0:127.0.0.1]/", "private address"),
        ("http://0x7f.0.0.1/", "non-standard form"),
        ("http://0177.0.0.1/", "non-standard form"),
        ("http://127.1/", "non-standard form"),
        ("http://2130706433/", "non-standard form"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "non-ASCII"),
    ],
)
def test_such_webhook_urls_are_refused_at_enqueue(url, why):
    with pytest.raises(InvalidRequest, match=why):
        check_webhook_url(url, AddressPolicy())


def test_legacy_ipv4_spellings_are_refused_even_where_private_receivers_are_allowed():
    with pytest.raises(InvalidRequest, match="non-standard form"):
        check_webhook_url("http://127.1/", AddressPolicy(private=True))


# -- 4. an empty gateway key -----------------------------------------------------------------


@pytest.mark.parametrize("keys", [[""], ["   "], ["k", ""]])
def test_empty_gateway_keys_are_dropped_by_the_settings_model(keys):
    assert all(
        k.get_secret_value().strip() for k in Settings(gateway_api_keys=keys).gateway_api_keys
    )


def test_a_gateway_whose_only_key_is_empty_refuses_to_start():
    from vidgo_stems.web.gateway import create_app

    with pytest.raises(ConfigError, match="VIDGO_STEMS_GATEWAY_API_KEYS is not set"):
        create_app(Settings(redis_url="redis://127.0.0.1:1/0", gateway_api_keys=[""]))


# -- 5. stem URLs: scheme, port and userinfo count, not only the host -------------------------

ORIGINS = Settings(vidgo_base_url="http://vidgo.test:8765").stem_origins


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://vidgo.test:9999/x.mp3", "vidgo.test:9999"),
        ("https://vidgo.test:8765/x.mp3", "https://vidgo.test:8765"),
        ("http://storage.vidgo.ai/x.mp3", "http://storage.vidgo.ai:80"),
        ("https://user:pw@storage.vidgo.ai/x.mp3", "user name, password"),
        ("http://user@vidgo.test:8765/x.mp3", "user name, password"),
        ("http://vidgo.test:99999/x.mp3", "malformed"),
    ],
)
def test_stem_urls_must_match_an_allowed_origin_exactly(url, why):
    with pytest.raises(StemHostNotAllowed, match=why):
        check_stem_url(url, ORIGINS)


@pytest.mark.parametrize(
    "url",
    [
        "http://vidgo.test:8765/x.mp3",
        "https://storage.vidgo.ai/a/b.mp3",
        "https://STORAGE.vidgo.ai:443/c",
    ],
)
def test_stem_urls_on_allowed_origins_pass(url):
    assert check_stem_url(url, ORIGINS) in ("vidgo.test", "storage.vidgo.ai")


# -- 6. operator mistakes ----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["foo://x", "http://redis:6379", "redis-host:6379"])
def test_a_redis_url_of_the_wrong_kind_is_one_line_naming_the_variable(monkeypatch, url):
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError, match=r"^invalid configuration: REDIS_URL: must start with "):
        load_settings()


# -- 7. control characters in requests ---------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"audio_url": "https://cdn.example/a\x00.mp3"},
        {"audio_url": "https://cdn.example/a\x1b.mp3"},
        {"audio_url": "https://cdn.example/a.mp3", "title": "Song\x00"},
        {"audio_url": "https://cdn.example/a.mp3", "title": "Song\x7f"},
    ],
)
def test_nul_and_control_characters_are_refused_in_urls_and_titles(fields):
    with pytest.raises(InvalidRequest, match="control character"):
        parse_request(fields)


def test_titles_keep_their_ordinary_whitespace_normalised():
    assert (
        parse_request({"audio_url": "https://cdn.example/a.mp3", "title": " A\tB\nC "}).title
        == "A B C"
    )


def test_an_echoed_value_is_cut(tmp_path):
    from vidgo_stems.models import validate_job_id

    with pytest.raises(InvalidRequest) as refused:
        validate_job_id("x" * 70_000)
    assert len(refused.value.message) < 300 and "70000 characters" in refused.value.message
    assert json.dumps(refused.value.message)
