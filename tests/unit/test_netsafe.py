"""The one URL policy: strict parsing, and every address judged by its kind, on every path."""

from __future__ import annotations

import socket

import pytest

from vidgo_stems.errors import InvalidRequest
from vidgo_stems.urlsafety import (
    LINK_LOCAL_SETTING,
    AddressPolicy,
    BadUrl,
    BlockedAddress,
    Kind,
    check_source_url,
    check_webhook_url,
    is_public,
    kind_of,
    parse_url,
)

CLOSED = AddressPolicy()
PRIVATE_OPEN = AddressPolicy(private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/vidgo",
        "http://93.184.216.34:8443/x?y=1",
        "https://[2606:4700::1]/h",
        "https://hooks.example.com:65535/h",
    ],
)
def test_public_urls_pass(url):
    assert check_webhook_url(url, CLOSED) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hook", "private address"),
        ("http://10.1.2.3/hook", "private address"),
        ("http://192.168.0.10/hook", "private address"),
        ("http://100.64.0.1/hook", "private address"),
        ("http://[::1]/hook", "private address"),
        ("http://[::ffff:127.0.0.1]/hook", "private address"),
        ("http://0.0.0.0/hook", "private address"),
        ("http://[fd12::1]/hook", "private address"),
        ("http://localhost:8000/hook", "local host"),
        ("http://api.internal/hook", "local host"),
        ("http://intranet/hook", "local host"),
    ],
)
def test_private_and_local_hosts_are_refused_with_the_way_out(url, why):
    with pytest.raises(InvalidRequest, match=why) as caught:
        check_webhook_url(url, CLOSED)
    assert "VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS" in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/",
        "http://100.100.100.200/latest/meta-data",  # Alibaba Cloud's metadata
        "http://[fd00:ec2::254]/latest/meta-data",  # AWS's metadata over IPv6
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:0:169.254.169.254]/",
        "http://[64:ff9b::169.254.169.254]/",
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
    ],
)
def test_link_local_and_metadata_stay_closed_when_private_hosts_are_allowed(url):
    with pytest.raises(InvalidRequest, match="link-local") as caught:
        check_webhook_url(url, PRIVATE_OPEN)
    assert LINK_LOCAL_SETTING in caught.value.message
    assert check_webhook_url(url, AddressPolicy(private=True, link_local=True))


def test_allow_private_opens_loopback_and_private_ranges_only():
    for url in ("http://127.0.0.1:9/h", "http://10.0.0.1/h", "http://localhost:8000/h"):
        assert check_webhook_url(url, PRIVATE_OPEN)
    for url in ("http://224.0.0.1/h", "http://192.0.2.1/h", "http://[ff02::1]/h"):
        with pytest.raises(InvalidRequest, match="no setting opens"):
            check_webhook_url(url, AddressPolicy(private=True, link_local=True))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("ftp://hooks.example.com/", "http"),
        ("file:///etc/passwd", "http"),
        ("https:///nohost", "host"),
        ("http://h.example.com:99999/", "port"),
        ("http://h.example.com:65536/", "port"),
        ("http://h.example.com:-1/", "port"),
        ("http://h.example.com:0/", "port"),
        ("http://h.example.com:8o/", "port"),
        ("https://user:pw@hooks.example.com/", "user name"),
        ("https://hooks.example.com%40evil.example/", "percent-escape"),
        ("https://evil.example%2f@hooks.example.com/", "user name"),
        ("https://hooks.example.com\\@evil.example/", "backslash"),
        ("https://hooks.example .com/", "white space"),
        ("https://hooks.example.com/a b", "white space"),
        ("https://hooks.example.com\t/", "control character"),
        ("https://hooks.ex\x00ample.com/", "control character"),
        ("https://hooks.example.com/\x1b[2J", "control character"),
        ("https://hooks.example.com/\udfff", "surrogate"),
        ("https://hooks.exa$mple.com/", "characters no host name holds"),
        ("http://0x7f.0.0.1/", "non-standard form"),
        ("http://0177.0.0.1/", "non-standard form"),
        ("http://127.1/", "non-standard form"),
        ("http://2130706433/", "non-standard form"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "non-ASCII"),
        ("https://hooks.example.com/" + "a" * 3000, "longer than 2048"),
    ],
)
def test_malformed_urls_are_refused_with_what_is_wrong(url, why):
    with pytest.raises(InvalidRequest, match=why):
        check_webhook_url(url, PRIVATE_OPEN)
    with pytest.raises(BadUrl, match=why):
        parse_url(url, "webhook_url")


def test_non_strings_are_refused():
    with pytest.raises(InvalidRequest, match="non-empty"):
        check_webhook_url(42, CLOSED)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.216.34", Kind.PUBLIC),
        ("2606:4700::1111", Kind.PUBLIC),
        ("64:ff9b::8.8.8.8", Kind.PUBLIC),
        ("127.0.0.1", Kind.PRIVATE),
        ("::1", Kind.PRIVATE),
        ("::", Kind.PRIVATE),
        ("::127.0.0.1", Kind.PRIVATE),  # compatible
        ("::ffff:10.0.0.1", Kind.PRIVATE),  # mapped
        ("::ffff:0:127.0.0.1", Kind.PRIVATE),  # translated, ::ffff:0:0:0/96
        ("64:ff9b::127.0.0.1", Kind.PRIVATE),  # NAT64
        ("64:ff9b:1::a00:1", Kind.PRIVATE),  # local-use NAT64
        ("2002:7f00:1::", Kind.PRIVATE),  # 6to4
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", Kind.PRIVATE),  # Teredo of 127.0.0.1
        ("169.254.169.254", Kind.LINK_LOCAL),
        ("fe80::1%eth0", Kind.LINK_LOCAL),
        ("::ffff:0:169.254.169.254", Kind.LINK_LOCAL),
        ("224.0.0.1", Kind.NEVER),
        ("192.0.2.1", Kind.NEVER),
        ("240.0.0.1", Kind.NEVER),
    ],
)
def test_every_address_is_judged_as_the_ipv4_it_carries(address, kind):
    assert kind_of(address) is kind
    assert is_public(address) is (kind is Kind.PUBLIC)


def _resolving_to(monkeypatch, *addresses):
    def fake(host, port, **_):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_a_name_resolving_to_any_private_address_is_blocked(monkeypatch):
    _resolving_to(monkeypatch, "93.184.216.34", "10.0.0.5")
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.5"):
        CLOSED.resolve("hooks.example.com", 443)


def test_a_name_resolving_to_the_metadata_address_is_blocked_where_private_is_open(monkeypatch):
    _resolving_to(monkeypatch, "169.254.169.254")
    with pytest.raises(BlockedAddress, match="link-local"):
        PRIVATE_OPEN.resolve("metadata.example.com", 80)


def test_a_name_resolving_to_public_addresses_passes(monkeypatch):
    _resolving_to(monkeypatch, "93.184.216.34")
    assert CLOSED.resolve("hooks.example.com", 443) == ["93.184.216.34"]


@pytest.mark.parametrize("error", [OSError("no such name"), ValueError("embedded null")])
def test_a_host_that_cannot_be_resolved_is_blocked_not_raised(monkeypatch, error):
    def fail(*_, **__):
        raise error

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(BlockedAddress, match="could not be resolved"):
        CLOSED.resolve("hooks.example.com", 443)


def test_source_urls_are_judged_by_the_source_policy():
    policy = AddressPolicy(setting="VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS")
    with pytest.raises(InvalidRequest, match="VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS"):
        check_source_url("http://127.0.0.1:8000/a.mp3", policy)
    check_source_url("https://cdn.example.com/a.mp3", policy)
