"""Catalog fuzz: whatever bytes a catalog holds, reading it ends in rows, row problems or one
CatalogError; never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vidgo_stems.batch.catalog import RowProblem, check_catalog, read_catalog
from vidgo_stems.errors import CatalogError
from vidgo_stems.text import check_tree, problem_in

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


#: Characters that must never get into a job from a catalog: lone surrogates and controls.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(categories=["Cs", "Cc"]),
        st.sampled_from("\x1b]0;pwned\x07\u202e"),
        st.characters(codec="utf-8"),
    ),
    min_size=1,
    max_size=24,
)


@st.composite
def hostile_rows(draw: st.DrawFn) -> str:
    row = {"audio_url": "https://cdn.example.com/a.mp3", "id": "r1"}
    field = draw(st.sampled_from(["audio_url", "title", "id", "metadata", "metadata_key"]))
    text = draw(hostile_text)
    if field == "audio_url":
        row["audio_url"] = "https://cdn.example.com/" + text
    elif field == "metadata":
        row["metadata"] = {"note": text}
    elif field == "metadata_key":
        row["metadata"] = {text: 1}
    else:
        row[field] = text
    return json.dumps(row)  # lone surrogates become \udXXX escapes, as an attacker writes


@settings(max_examples=200, deadline=None, database=None)
@given(lines=st.lists(hostile_rows(), min_size=1, max_size=6), csv_title=hostile_text)
def test_no_surrogate_or_control_character_gets_into_a_job_from_a_catalog(lines, csv_title):
    with tempfile.TemporaryDirectory() as folder:
        jsonl = Path(folder) / "catalog.jsonl"
        jsonl.write_text("\n".join(lines))
        csv = Path(folder) / "catalog.csv"
        title = csv_title.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        csv.write_text(f'audio_url,title\nhttps://cdn.example.com/a.mp3,"{title}"\n')
        for path in (jsonl, csv):
            try:
                items = list(read_catalog(path))
            except CatalogError as exc:
                assert problem_in(exc.message) is None, exc.message
                continue
            for item in items:
                if isinstance(item, RowProblem):
                    assert problem_in(item.reason) is None, item.reason
                    continue
                request = item.request
                assert problem_in(request.audio_url) is None, request.audio_url
                assert request.title is None or problem_in(request.title) is None, request.title
                assert check_tree(item.metadata, "metadata") is None, item.metadata
                assert problem_in(item.row_id) is None, item.row_id
