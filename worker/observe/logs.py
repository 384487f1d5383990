"""Logs: plain text or one JSON object per line (``VIDGO_STEMS_LOG_FORMAT``), secrets never.

Every stage transition is one line carrying ``job_id``, ``vidgo_task_id``, ``stage``,
``attempt`` and ``duration_s`` (and ``from_state``, ``to_state``, ``event``): as JSON fields,
or as ``key=value`` pairs after the message in plain mode. ``stage``, ``attempt`` and the start
of ``duration_s`` come from the task running in this process (:func:`stage_started`).

Both formatters scrub every configured secret (the Vidgo key, gateway keys, the webhook and
link-signing secrets, the AWS secret key, a password in REDIS_URL) from the finished line,
tracebacks included, as a last line of defence behind ``SecretStr``. Per-job secrets no
process knows in advance (the callback token in the URL Vidgo is given) are masked by their
shape: any ``token=`` or ``callback_token`` value in a line, plain, percent-encoded or
JSON-escaped, as when an exception's text carries a whole request body.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from vidgo_stems.settings import Settings

#: The fields of a transition line, in the order plain text shows them.
CONTEXT_FIELDS = (
    "job_id",
    "vidgo_task_id",
    "stage",
    "attempt",
    "duration_s",
    "from_state",
    "to_state",
    "event",
)
PLAIN_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"
MASK = "***"
#: ``token=VALUE`` (also ``token%3DVALUE``) and ``"callback_token": "VALUE"``: the value goes.
_TOKEN_VALUE = re.compile(
    r"""(?ix)
    ( (?: (?<![a-z]) | (?<=%3F) | (?<=%26) ) token (?: = | %3D ) )  # token=, token%3D
    [^\s&#"'\\<>,;)\]}]+
    | ( callback_token \\* ["'] \s* [:=] \s* \\* ["'] )   # "callback_token": "..." (escaped)
    [^"'\\]+
    """
)


def mask_tokens(line: str) -> str:
    """``line`` with the value of every ``token=`` query parameter and ``callback_token``
    field replaced by the mask."""
    return _TOKEN_VALUE.sub(lambda m: (m.group(1) or m.group(2)) + MASK, line)


@dataclass(frozen=True)
class StageRun:
    stage: str
    attempt: int
    started: float


_current: contextvars.ContextVar[StageRun | None] = contextvars.ContextVar(
    "vidgo_stems_stage", default=None
)


def stage_started(stage: str, attempt: int) -> contextvars.Token[StageRun | None]:
    """Mark the start of a stage run in this context (a task's prerun)."""
    return _current.set(StageRun(stage, attempt, time.monotonic()))


def stage_finished(token: contextvars.Token[StageRun | None] | None = None) -> None:
    if token is not None:
        _current.reset(token)
    else:
        _current.set(None)


def transition_fields(
    job_id: str, vidgo_task_id: str | None, *, from_state: str, to_state: str, event: str
) -> dict[str, Any]:
    """The ``extra`` of a transition line."""
    run = _current.get()
    return {
        "job_id": job_id,
        "vidgo_task_id": vidgo_task_id or None,
        "stage": run.stage if run else None,
        "attempt": run.attempt if run else None,
        "duration_s": round(time.monotonic() - run.started, 3) if run else None,
        "from_state": from_state,
        "to_state": to_state,
        "event": event,
    }


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value this process knows, longest first (so none is left half-masked)."""
    values = [
        s.get_secret_value()
        for s in (
            settings.vidgo_api_key,
            settings.webhook_secret,
            settings.file_url_secret,
            settings.redis_sentinel_password,
            *settings.gateway_api_keys,
        )
        if s is not None
    ]
    values.append(os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    values.append(os.environ.get("AWS_SESSION_TOKEN", ""))
    if settings.redis_url:
        password = urlsplit(settings.redis_url).password
        if password:
            values.extend((password, unquote(password)))
    found = {v for v in values if len(v) >= 4}  # a 1-3 character "secret" would mask everything
    return sorted(found, key=len, reverse=True)


class _Scrub:
    """Replace secrets in a finished line (and their JSON-escaped forms)."""

    def __init__(self, secrets: list[str]) -> None:
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1])}
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        return mask_tokens(line)


class PlainFormatter(logging.Formatter):
    """Celery's usual line, then ``key=value`` for the transition fields a record carries."""

    def __init__(self, secrets: list[str], fmt: str = PLAIN_FORMAT) -> None:
        super().__init__(fmt)
        self._scrub = _Scrub(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        if pairs:
            head, sep, tail = line.partition("\n")  # keep a traceback below the pairs
            line = f"{head} {' '.join(pairs)}{sep}{tail}"
        return self._scrub(line)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, ``process``, the
    transition fields when present, and ``exc_info`` for an exception."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(processName)s",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "processName": "process",
            },
            json_ensure_ascii=False,
            # uvicorn adds an ANSI-coloured copy of its messages: not for a log store.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
        self._scrub = _Scrub(secrets)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """ISO 8601 in UTC, with milliseconds: what log stores parse without a hint."""
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


def formatter_for(settings: Settings) -> logging.Formatter:
    secrets = secrets_of(settings)
    if settings.log_format == "json":
        return JsonLineFormatter(secrets)
    return PlainFormatter(secrets)


def apply_to(logger: logging.Logger, settings: Settings) -> None:
    """Give every handler of ``logger`` our formatter (Celery's logger set-up signals)."""
    formatter = formatter_for(settings)
    for handler in logger.handlers:
        handler.setFormatter(formatter)


def configure(
    settings: Settings, *, level: int | str = logging.INFO, stream: TextIO | None = None
) -> None:
    """Log set-up for processes that are not Celery workers (gateway, CLI, batch runner)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter_for(settings))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
