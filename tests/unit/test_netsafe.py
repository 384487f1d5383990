"""SSRF guards on caller webhook URLs: checked at enqueue and again, after DNS, at delivery."""

from __future__ import annotations

import socket

import pytest

from worker.errors import InvalidRequest
from worker.urlsafety import BlockedAddress, check_webhook_url, is_public, resolve_public


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/vidgo",
        "http://93.184.216.34:8443/x?y=1",
        "https://[2606:4700::1]/h",
    ],
)
def test_public_urls_pass(url):
    assert check_webhook_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hook", "non-public address"),
        ("http://10.1.2.3/hook", "non-public address"),
        ("http://192.168.0.10/hook", "non-public address"),
        ("http://169.254.169.254/latest/meta-data", "non-public address"),  # cloud metadata
        ("http://[::1]/hook", "non-public address"),
        ("http://[::ffff:127.0.0.1]/hook", "non-public address"),
        ("http://0.0.0.0/hook", "non-public address"),
        ("http://localhost:8000/hook", "local host"),
        ("http://api.internal/hook", "local host"),
        ("http://intranet/hook", "local host"),
    ],
)
def test_private_and_local_hosts_are_refused_with_the_way_out(url, why):
    with pytest.raises(InvalidRequest, match=why) as caught:
        check_webhook_url(url, allow_private=False)
    assert "VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS" in caught.value.message


def test_allow_private_lifts_only_the_address_rules():
    assert check_webhook_url("http://127.0.0.1:9/h", allow_private=True)
    with pytest.raises(InvalidRequest, match="http"):
        check_webhook_url("file:///etc/passwd", allow_private=True)
    with pytest.raises(InvalidRequest, match="user name or password"):
        check_webhook_url("https://user:pw@hooks.example.com/", allow_private=True)


@pytest.mark.parametrize(
    "url", ["", "   ", "ftp://hooks.example.com/", "https:///nohost", "http://h.example.com:99999/"]
)
def test_malformed_urls_are_refused(url):
    with pytest.raises(InvalidRequest, match="webhook_url"):
        check_webhook_url(url, allow_private=False)


def test_non_strings_and_huge_urls_are_refused():
    with pytest.raises(InvalidRequest, match="non-empty"):
        check_webhook_url(42, allow_private=False)
    with pytest.raises(InvalidRequest, match="longer than 2048"):
        check_webhook_url("https://hooks.example.com/" + "a" * 3000, allow_private=False)


def _resolving_to(monkeypatch, *addresses):
    def fake(host, port, **_):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_a_name_resolving_to_any_private_address_is_blocked(monkeypatch):
    _resolving_to(monkeypatch, "93.184.216.34", "10.0.0.5")
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.5"):
        resolve_public("hooks.example.com", 443)


def test_a_name_resolving_to_public_addresses_passes(monkeypatch):
    _resolving_to(monkeypatch, "93.184.216.34")
    assert resolve_public("hooks.example.com", 443) == ["93.184.216.34"]


def test_is_public_judges_mapped_ipv4_as_ipv4():
    assert not is_public("::ffff:10.0.0.1")
    assert is_public("::ffff:93.184.216.34")
