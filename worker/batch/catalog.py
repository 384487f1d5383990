"""Catalogs for batch runs: CSV or JSONL rows, read as a stream and checked row by row.

Columns (CSV header or JSONL keys): ``audio_url`` (required), optional ``id``, ``title``,
``model_name``, ``output_type``, and the delivery columns ``format``, ``sample_rate`` and
``normalize_lufs``; every other column is free metadata (in JSONL, a ``metadata``
object is merged in too). Each problem is reported with its line number and a reason, and never
stops the reading: the caller decides whether bad rows stop the run or are skipped.
"""

from __future__ import annotations

import csv
import hashlib
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgo_stems import jsonsafe
from vidgo_stems.errors import CatalogError, InvalidRequest
from vidgo_stems.jsonsafe import DEFAULT_LIMITS, JsonLimits, JsonRefused
from vidgo_stems.models import TRACK_FIELDS, JobRequest, parse_request, validate_metadata
from vidgo_stems.text import neutralise, problem_in
from vidgo_stems.urlsafety import SOURCE_SETTING, AddressPolicy, check_source_url

#: Columns read as the request (the rest of a row is its metadata): the row id and the track.
KNOWN = ("id", *TRACK_FIELDS)
MAX_ROW_ID_LENGTH = 200
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class CatalogRow:
    """One valid row: where it is, its id, the request and the job it becomes."""

    line: int
    row_id: str
    request: JobRequest
    metadata: dict[str, Any]
    job_id: str


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class CatalogCheck:
    """The result of reading a whole catalog once."""

    batch_id: str
    rows: int = 0
    valid: int = 0
    jobs: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    job_ids: set[str] = field(default_factory=set)


def batch_id_of(path: Path) -> str:
    """A batch is its catalog's content: the same file always re-attaches to the same batch.
    Refuses what is not a text file first (a device such as /dev/zero would never end)."""
    catalog_format(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CatalogError(f"cannot read the catalog {path}: {exc.strerror or exc}") from None
    return "b" + digest.hexdigest()[:23]


def catalog_format(path: Path) -> str:
    """``csv`` or ``jsonl``, by suffix, else by the first character; refuses binary files."""
    try:
        # Checked before opening: opening a FIFO waits for a writer, reading a device never ends.
        if not stat.S_ISREG(path.stat().st_mode):
            raise CatalogError(
                f"{path} is not a regular file (a device, pipe or socket): give a CSV or JSONL "
                "file, which is read twice (to name the batch, then row by row)"
            )
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise CatalogError(f"cannot read the catalog {path}: {exc.strerror or exc}") from None
    if b"\x00" in head:
        raise CatalogError(
            f"{path} looks binary (it holds NUL bytes): give a CSV or JSONL text file"
        )
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def read_catalog(
    path: Path, limits: JsonLimits = DEFAULT_LIMITS, source: AddressPolicy | None = None
) -> Iterator[CatalogRow | RowProblem]:
    """Every row of the catalog, in order: a CatalogRow, or a RowProblem saying what is wrong.
    JSONL rows are parsed within ``limits`` (nesting depth, integer length); each row's
    ``audio_url`` is judged by ``source``, the policy every other path uses (default: public
    hosts only)."""
    kind = catalog_format(path)
    bad_lines: set[int] = set()
    lines = _decoded_lines(path, bad_lines)
    raw = _jsonl_rows(lines, limits) if kind == "jsonl" else _csv_rows(lines, path, bad_lines)
    for line, fields in raw:
        if isinstance(fields, str):
            yield RowProblem(line, fields)
        elif line in bad_lines:
            yield RowProblem(line, "not valid UTF-8 text (is part of the file binary?)")
        else:
            yield _row(line, fields, source or AddressPolicy(setting=SOURCE_SETTING))


def check_catalog(
    path: Path, limits: JsonLimits = DEFAULT_LIMITS, source: AddressPolicy | None = None
) -> CatalogCheck:
    """Read the whole catalog once: count rows and jobs, and collect every problem, including
    an id used again for different content."""
    check = CatalogCheck(batch_id=batch_id_of(path))
    seen_ids: dict[str, tuple[str, int]] = {}
    jobs = check.job_ids
    for item in read_catalog(path, limits, source):
        check.rows += 1
        if isinstance(item, RowProblem):
            check.problems.append(item)
            continue
        earlier = seen_ids.setdefault(item.row_id, (item.job_id, item.line))
        if earlier[0] != item.job_id:
            check.problems.append(
                RowProblem(
                    item.line,
                    f"id {item.row_id!r} was already used on line {earlier[1]} for a different "
                    "track or model: give each row its own id",
                )
            )
            continue
        check.valid += 1
        jobs.add(item.job_id)
    check.jobs = len(jobs)
    return check


def _decoded_lines(path: Path, bad: set[int]) -> Iterator[str]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.add(number)
                yield raw.decode("utf-8", errors="replace")


def _jsonl_rows(
    lines: Iterable[str], limits: JsonLimits
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = jsonsafe.loads(text, limits)
        except JsonRefused as exc:
            yield number, str(exc)
            continue
        if not isinstance(value, dict):
            yield number, f"each line must be a JSON object, got {type(value).__name__}"
            continue
        extra = value.pop("metadata", None)
        if extra is not None and not isinstance(extra, dict):
            yield number, "metadata must be a JSON object"
            continue
        yield number, {**value, "metadata": {**(extra or {})}}


def _csv_rows(
    lines: Iterable[str], path: Path, bad_lines: set[int]
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(lines, strict=True)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise CatalogError(f"{path} is empty: the first line must name the columns") from None
    except csv.Error as exc:
        raise CatalogError(f"{path} line 1: the header is not valid CSV ({exc})") from None
    if bad_lines.intersection(range(1, reader.line_num + 1)):
        raise CatalogError(
            f"{path} line 1: the header is not valid UTF-8 text; save the catalog as UTF-8"
        )
    _refuse_repeated_columns(header, path)
    if "audio_url" not in header:
        raise CatalogError(
            f"{path} line 1: no audio_url column (found: {neutralise(', '.join(header), 200)}); "
            "the first "
            "line must name the columns, e.g. audio_url,id,title,model_name,output_type"
        )
    done = reader.line_num
    while True:
        start = done + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            done = reader.line_num
            yield start, f"broken CSV ({exc}); check the quoting of this row"
            continue
        done = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield start, f"has {len(values)} fields, the header has {len(header)}"
            continue
        cells = dict(zip(header, values, strict=True))
        row: dict[str, Any] = {k: cells[k] for k in KNOWN if cells.get(k, "").strip()}
        row["metadata"] = {k: v for k, v in cells.items() if k not in KNOWN and v != ""}
        yield start, row


def _refuse_repeated_columns(header: list[str], path: Path) -> None:
    """Two columns of one name: which would hold the row's value is a guess, so say which."""
    seen: set[str] = set()
    for name in filter(None, header):  # unnamed columns (trailing commas) are not names
        if name in seen:
            raise CatalogError(
                f"{path} line 1: the column {name[:80]!r} is named twice (names are compared "
                "without case and surrounding spaces); give each column its own name"
            )
        seen.add(name)


def _row(line: int, fields: dict[str, Any], source: AddressPolicy) -> CatalogRow | RowProblem:
    if not fields.get("audio_url"):
        return RowProblem(line, "audio_url is missing")
    raw_id = fields.get("id")
    row_id = str(raw_id).strip() if raw_id not in (None, "") else f"line-{line}"
    if len(row_id) > MAX_ROW_ID_LENGTH:
        return RowProblem(line, f"id is longer than {MAX_ROW_ID_LENGTH} characters")
    if problem := problem_in(row_id):
        return RowProblem(line, f"id {problem}")
    known: dict[str, Any] = {k: fields[k] for k in KNOWN if k in fields and k != "id"}
    extra = {k: v for k, v in fields.items() if k not in KNOWN and k != "metadata"}
    try:
        request = parse_request(known)
        check_source_url(request.audio_url, source)
        metadata = validate_metadata({**fields.get("metadata", {}), **extra})
    except InvalidRequest as exc:
        return RowProblem(line, exc.message.removeprefix("invalid job request: "))
    return CatalogRow(line, row_id, request, metadata, request.fingerprint())
