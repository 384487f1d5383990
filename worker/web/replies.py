"""How the gateway answers when it refuses: always ``{"error": {"code", "message"}}``, the
message saying what was wrong (and cut short if it quotes a long input)."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


#: A refusal's message is cut to this many characters, whatever input it quotes.
MAX_MESSAGE_CHARS = 1000


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "... (cut)"
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers or None
    )


def describe_validation(exc: RequestValidationError) -> str:
    """One line per problem, naming the field and never echoing the (maybe huge) input."""
    return describe_errors(exc.errors())


def describe_errors(errors: Any) -> str:
    """One line per problem, naming the field and never echoing the (maybe huge) input."""
    problems = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(problems[:10]) or "invalid request"
