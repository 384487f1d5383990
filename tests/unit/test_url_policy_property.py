"""The URL policy gives one verdict on every path, for URLs built from a grammar of the tricks
that get past weaker checks: userinfo and ``%40``, backslashes, white space and controls, ports
out of range, legacy IPv4 spellings, and every IPv6 form that carries an IPv4 address."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidgo_stems.errors import InvalidRequest, StemHostNotAllowed
from vidgo_stems.models import parse_request
from vidgo_stems.urlsafety import (
    AddressPolicy,
    BlockedAddress,
    Kind,
    check_source_url,
    check_stem_url,
    check_webhook_url,
    connectable,
    kind_of,
)

POLICIES = [
    AddressPolicy(),
    AddressPolicy(private=True),
    AddressPolicy(private=True, link_local=True),
]
#: What a host name resolves to in these tests (no DNS is asked).
NAME_ADDRESS = "93.184.216.34"

SPECIAL_V4 = "127.0.0.1 10.0.0.1 169.254.169.254 100.100.100.200 0.0.0.0 8.8.8.8 192.168.1.1"
special_v4 = st.sampled_from([*SPECIAL_V4.split(), "172.16.0.1", "100.64.0.1", "224.0.0.1"])
v4 = st.one_of(special_v4, st.ip_addresses(v=4).map(str))


def v6_forms(address: str) -> list[str]:
    """Every IPv6 spelling that carries ``address``."""
    n = int(ipaddress.IPv4Address(address))
    hi, lo = n >> 16, n & 0xFFFF
    teredo_client = n ^ 0xFFFFFFFF
    return [
        f"::ffff:{address}",  # mapped
        f"::{address}",  # compatible
        f"::ffff:0:{address}",  # translated
        f"64:ff9b::{address}",  # NAT64
        f"64:ff9b:1::{hi:x}:{lo:x}",  # local-use NAT64
        f"2002:{hi:x}:{lo:x}::1",  # 6to4
        f"2001:0:4136:e378:8000:63bf:{teredo_client >> 16:x}:{teredo_client & 0xFFFF:x}",
    ]


def legacy_forms(address: str) -> list[str]:
    """Spellings of ``address`` that the C resolver reads but that are not dotted quads."""
    parts = [int(p) for p in address.split(".")]
    return [
        str(int(ipaddress.IPv4Address(address))),
        ".".join(hex(p) for p in parts),
        ".".join(f"0{p:o}" for p in parts),
        f"{parts[0]}.{(parts[1] << 16) | (parts[2] << 8) | parts[3]}",
    ]


@st.composite
def hosts(draw: st.DrawFn) -> str:
    address = draw(v4)
    form = draw(st.sampled_from(["v4", "v6", "legacy", "name", "odd"]))
    if form == "v4":
        return address
    if form == "v6":
        return f"[{draw(st.sampled_from(v6_forms(address)))}]"
    if form == "legacy":
        return draw(st.sampled_from(legacy_forms(address)))
    if form == "name":
        return draw(st.sampled_from(["cdn.example.com", "localhost", "intranet", "a.local"]))
    return draw(
        st.sampled_from(
            [
                "cdn.example.com%40evil.example",
                "evil.example\\@cdn.example.com",
                "cdn .example.com",
                "cdn.exa\x00mple.com",
                "cdn.example.com\t",
                "\uff11\uff12\uff17.0.0.1",
                "[fe80::1%25eth0]",
                "[::1]",
                "[fd00:ec2::254]",
                "cdn.example.com\udfff",
            ]
        )
    )


urls = st.builds(
    lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}{path}",
    st.sampled_from(["http", "https", "https", "HTTPS", "ftp", "file"]),
    st.sampled_from(["", "", "", "", "", "", "user@", "user:pw@", "a%40b@", "@"]),
    hosts(),
    st.sampled_from(["", "", "", "", ":8080", ":1", ":65535", ":0", ":65536", ":-1", ":8o"]),
    st.sampled_from(["/a.mp3", "/a.mp3", "/a.mp3", "/", "/%2e%2e/x", "/a b", "/\x1b[2J", "/\\x"]),
)


def _fake_dns(host, port, *_, **__):
    """Literal addresses resolve to themselves, names to a public address."""
    try:
        address = str(ipaddress.ip_address(host.strip("[]").split("%")[0]))
    except ValueError:
        address = NAME_ADDRESS
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return [(family, socket.SOCK_STREAM, 6, "", (address, port))]


def verdicts(url: str, policy: AddressPolicy) -> dict[str, bool]:
    """Whether each path takes ``url`` (True) or refuses it (False)."""
    taken: dict[str, bool] = {}
    try:
        check_webhook_url(url, policy)
        taken["webhook at enqueue"] = True
    except InvalidRequest:
        taken["webhook at enqueue"] = False
    try:
        request = parse_request({"audio_url": url})
        check_source_url(request.audio_url, policy)
        taken["source at enqueue"] = True
    except InvalidRequest:
        taken["source at enqueue"] = False
    try:
        connectable(url, policy)
        taken["delivery and source fetch"] = True
    except BlockedAddress:
        taken["delivery and source fetch"] = False
    return taken


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(url=urls, policy=st.sampled_from(POLICIES))
def test_every_path_gives_the_same_verdict(monkeypatch, url, policy):
    monkeypatch.setattr(socket, "getaddrinfo", _fake_dns)
    seen = verdicts(url, policy)
    assert len(set(seen.values())) == 1, (url, policy, seen)
    if not seen["webhook at enqueue"]:
        # A URL refused for its form is refused as a stem URL too, whatever the origins.
        try:
            check_stem_url(url, frozenset({("https", "cdn.example.com", 443)}))
        except StemHostNotAllowed:
            pass
        else:
            assert policy.private or policy.link_local, url


@settings(max_examples=300, deadline=None)
@given(address=v4, form=st.integers(min_value=0, max_value=6))
def test_every_ipv6_form_is_judged_as_the_ipv4_it_carries(address, form):
    carried = kind_of(address)
    wrapped = kind_of(v6_forms(address)[form])
    if carried is Kind.PUBLIC:
        assert wrapped is Kind.PUBLIC or wrapped > Kind.PUBLIC
    else:
        assert wrapped >= carried, (address, v6_forms(address)[form], wrapped, carried)


@settings(max_examples=200, deadline=None)
@given(address=v4, form=st.integers(min_value=0, max_value=3))
def test_legacy_ipv4_spellings_are_refused_under_every_policy(address, form):
    url = f"http://{legacy_forms(address)[form]}/"
    for policy in POLICIES:
        with pytest.raises(InvalidRequest, match="non-standard form"):
            check_webhook_url(url, policy)


@pytest.mark.parametrize(
    "trick",
    ["user@", "user:pw@", "a%40b@", "@"],
)
def test_userinfo_in_any_spelling_is_refused_on_every_path(monkeypatch, trick):
    monkeypatch.setattr(socket, "getaddrinfo", _fake_dns)
    url = f"https://{trick}cdn.example.com/a.mp3"
    for policy in POLICIES:
        assert set(verdicts(url, policy).values()) == {False}
