"""Catalog fuzz: whatever bytes a catalog holds, reading it ends in rows, row problems or one
CatalogError; never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batch.catalog import check_catalog
from worker.errors import CatalogError

json_lines = st.one_of(
    st.just('{"audio_url": "https://cdn.example.com/a.mp3"}'),
    st.integers(min_value=1, max_value=6000).map(lambda n: '{"n": ' + "7" * n + "}"),
    st.integers(min_value=1, max_value=20000).map(lambda n: "[" * n + "]" * n),
    st.integers(min_value=1, max_value=20000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.text(max_size=200),
)
csv_lines = st.one_of(
    st.just("audio_url,id,title"),
    st.just("https://cdn.example.com/a.mp3,r1,t"),
    st.text(max_size=200),
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    suffix=st.sampled_from([".csv", ".jsonl", ".txt"]),
    lines=st.lists(st.one_of(json_lines, csv_lines), max_size=8),
    raw=st.binary(max_size=300),
    encode_raw=st.booleans(),
)
def test_no_catalog_content_escapes_as_anything_but_a_catalog_error(suffix, lines, raw, encode_raw):
    content = raw if encode_raw else "\n".join(lines).encode("utf-8", errors="surrogatepass")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"catalog{suffix}"
        path.write_bytes(content)
        try:
            check = check_catalog(path)
        except CatalogError as exc:
            assert exc.message and "\n" not in exc.message
            return
        assert check.rows == check.valid + len(check.problems)
