"""Catalog reading: CSV and JSONL rows, line-numbered problems, batch ids, duplicate rows."""

from __future__ import annotations

import json

import pytest

from vidgo_stems.batch.catalog import (
    CatalogError,
    CatalogRow,
    RowProblem,
    batch_id_of,
    check_catalog,
    read_catalog,
)


def write(tmp_path, name, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def problems(path):
    return {p.line: p.reason for p in read_catalog(path) if isinstance(p, RowProblem)}


def test_good_csv_rows_become_requests_with_free_columns_as_metadata(tmp_path):
    path = write(
        tmp_path,
        "c.csv",
        "audio_url,id,title,model_name,output_type,label,isrc\n"
        "https://cdn.example/a.mp3,a1,Song A,enhanced,vocals,Acme,US123\n"
        "https://cdn.example/b.mp3,,,,,,\n",
    )
    rows = list(read_catalog(path))
    assert [type(r) for r in rows] == [CatalogRow, CatalogRow]
    a, b = rows
    assert (a.line, a.row_id, a.request.title) == (2, "a1", "Song A")
    assert a.request.model_name.value == "enhanced" and a.request.output_type.value == "vocals"
    assert a.metadata == {"label": "Acme", "isrc": "US123"}
    assert (b.row_id, b.request.model_name.value, b.metadata) == ("line-3", "base", {})


def test_bad_csv_rows_get_their_line_numbers_and_a_reason(tmp_path):
    path = write(
        tmp_path,
        "c.csv",
        "audio_url,id,model_name\n"
        "https://cdn.example/ok.mp3,1,base\n"  # 2
        ",2,base\n"  # 3: missing URL
        "https://cdn.example/x.mp3,3,turbo\n"  # 4: bad enum
        '"https://cdn.example/q.mp3"oops,4,base\n'  # 5: broken quoting
        "https://cdn.example/y.mp3,5\n"  # 6: too few fields
        "ftp://cdn.example/z.mp3,6,base\n"  # 7: not http(s)
        "https://cdn.example/fine.mp3,7,base\n",  # 8
    )
    found = problems(path)
    assert set(found) == {3, 4, 5, 6, 7}
    assert "audio_url is missing" in found[3]
    assert "turbo" in found[4] and "base, enhanced, instrumental" in found[4]
    assert "broken CSV" in found[5] and "quoting" in found[5]
    assert "3 fields" in found[6] or "2 fields" in found[6]
    assert "audio_url" in found[7]
    assert [r.line for r in read_catalog(path) if isinstance(r, CatalogRow)] == [2, 8]


def test_an_unterminated_quote_is_reported_where_it_starts(tmp_path):
    path = write(
        tmp_path,
        "c.csv",
        'audio_url,title\nhttps://a.example/1.mp3,"never closed\nhttps://a.example/2.mp3,x\n',
    )
    assert list(problems(path)) == [2]


def test_a_duplicate_id_with_different_content_is_a_problem_but_same_content_is_not(tmp_path):
    path = write(
        tmp_path,
        "c.csv",
        "audio_url,id\n"
        "https://cdn.example/a.mp3,x\n"
        "https://cdn.example/a.mp3,x\n"  # the same row again: fine, same job
        "https://cdn.example/b.mp3,x\n",  # same id, other track
    )
    check = check_catalog(path)
    assert (check.rows, check.valid, check.jobs) == (3, 2, 1)
    (problem,) = check.problems
    assert problem.line == 4 and "already used on line 2" in problem.reason


def test_rows_that_fingerprint_the_same_become_one_job(tmp_path):
    path = write(
        tmp_path,
        "c.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"audio_url": "https://cdn.example/a.mp3", "id": "1", "title": "A"},
                {"audio_url": "https://cdn.example/a.mp3", "id": "2", "title": "A (remaster)"},
                {"audio_url": "https://cdn.example/a.mp3", "id": "3", "output_type": "bass"},
            ]
        ),
    )
    rows = list(read_catalog(path))
    assert rows[0].job_id == rows[1].job_id != rows[2].job_id
    assert check_catalog(path).jobs == 2


def test_jsonl_problems(tmp_path):
    path = write(
        tmp_path,
        "c.jsonl",
        '{"audio_url": "https://cdn.example/a.mp3", "metadata": {"k": 1}, "extra": "e"}\n'
        "{not json\n"
        "[1, 2]\n"
        "\n"
        '{"audio_url": "https://cdn.example/b.mp3", "metadata": "nope"}\n'
        '{"title": "no url"}\n'
        '{"audio_url": "https://cdn.example/c.mp3", "output_type": "kazoo"}\n',
    )
    rows = list(read_catalog(path))
    assert rows[0].metadata == {"k": 1, "extra": "e"}
    found = problems(path)
    assert set(found) == {2, 3, 5, 6, 7}
    assert "not valid JSON" in found[2] and "JSON object" in found[3]
    assert "metadata" in found[5] and "missing" in found[6] and "kazoo" in found[7]


def test_a_binary_file_is_refused_with_what_to_give_instead(tmp_path):
    path = write(tmp_path, "tracks.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(CatalogError, match=r"binary.*CSV or JSONL"):
        list(read_catalog(path))


def test_binary_bytes_inside_a_text_catalog_are_a_row_problem(tmp_path):
    path = write(
        tmp_path,
        "c.csv",
        b"audio_url\nhttps://cdn.example/a.mp3\nhttps://cdn.example/\xff\xfe.mp3\n",
    )
    assert problems(path) == {3: "not valid UTF-8 text (is part of the file binary?)"}


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), ("title,id\nx,1\n", "no audio_url column")],
)
def test_a_catalog_without_a_usable_header_is_refused(tmp_path, text, match):
    with pytest.raises(CatalogError, match=match):
        list(read_catalog(write(tmp_path, "c.csv", text)))


def test_a_missing_catalog_is_refused_with_the_path(tmp_path):
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        list(read_catalog(tmp_path / "nope.csv"))


def test_the_batch_id_is_the_content(tmp_path):
    a = write(tmp_path, "a.csv", "audio_url\nhttps://cdn.example/a.mp3\n")
    b = write(tmp_path, "b.csv", "audio_url\nhttps://cdn.example/a.mp3\n")
    c = write(tmp_path, "c.csv", "audio_url\nhttps://cdn.example/b.mp3\n")
    assert batch_id_of(a) == batch_id_of(b) != batch_id_of(c)


def test_a_row_is_held_to_the_same_source_policy_as_every_other_path(tmp_path):
    from vidgo_stems.urlsafety import AddressPolicy

    catalog = tmp_path / "c.csv"
    catalog.write_text(
        "audio_url,id\n"
        "http://127.0.0.1:8000/a.mp3,r1\n"
        "http://169.254.169.254/latest,r2\n"
        "https://cdn.example.com/a.mp3,r3\n"
    )
    closed = check_catalog(catalog)
    assert [p.line for p in closed.problems] == [2, 3] and closed.valid == 1
    assert "VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS" in closed.problems[0].reason
    private = check_catalog(catalog, source=AddressPolicy(private=True))
    assert [p.line for p in private.problems] == [3]
    assert "link-local" in private.problems[0].reason


def test_a_header_without_audio_url_is_quoted_neutralised(tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text("\x1b]0;pwned\x07title,id\nx,y\n")
    with pytest.raises(CatalogError) as caught:
        check_catalog(catalog)
    assert "\x1b" not in caught.value.message and "\\x1b" in caught.value.message
