"""Each Lua script's header against its spec in vidgo_stems.pipeline.scripts: the names, in order,
and no KEYS or ARGV read beyond what the header declares."""

from __future__ import annotations

import re

import fakeredis
import pytest

from vidgo_stems.pipeline import scripts
from vidgo_stems.pipeline.scripts import ALL, LuaSpec

HEADER = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\] (\w+):", re.M)


def declared(spec: LuaSpec) -> tuple[list[str], list[str], str | None]:
    """(KEYS names, ARGV names, the variable tail's name) as the header lists them, checking
    that the positions run 1, 2, 3 ... with the tail last."""
    keys: list[str] = []
    args: list[str] = []
    rest = None
    for kind, number, tail, name in HEADER.findall(spec.source()):
        names = keys if kind == "KEYS" else args
        assert rest is None, f"{spec.name}.lua: {name} after the variable tail"
        assert int(number) == len(names) + 1, f"{spec.name}.lua: {kind}[{number}] out of order"
        if tail:
            assert kind == "ARGV"
            rest = name
        else:
            names.append(name)
    return keys, args, rest


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_each_spec_names_what_its_script_header_declares(spec):
    keys, args, rest = declared(spec)
    assert (tuple(keys), tuple(args), rest) == (spec.keys, spec.args, spec.rest)


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.name)
def test_no_script_reads_a_position_its_header_does_not_declare(spec):
    body = spec.source()
    read_keys = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    read_args = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)}
    assert max(read_keys, default=0) <= len(spec.keys)
    if spec.rest is None:
        assert max(read_args, default=0) <= len(spec.args)


def test_a_call_with_a_missing_or_unknown_name_is_refused_before_anything_is_sent():
    client = fakeredis.FakeRedis()
    annotate = scripts.ANNOTATE.bind(client)
    with pytest.raises(TypeError, match=r"missing \['job'\], unknown \['jobb'\]"):
        annotate(keys={"jobb": "k"}, rest=["a", "1"])
    lease = scripts.LEASE.bind(client)
    with pytest.raises(TypeError, match="takes no further ARGV"):
        lease(keys={"lease": "l"}, args={"owner": "me", "ms": 100}, rest=["x"])
    assert lease(keys={"lease": "l"}, args={"owner": "me", "ms": 1000}) == 1
    assert client.get("l") == b"me"
