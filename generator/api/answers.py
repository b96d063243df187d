"""The one shape of every error answer, `{"error": {"status", "message", "problems"}}`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """The body of every error answer."""

    status: int
    message: str
    problems: list[str] = []


class ErrorResponse(BaseModel):
    """`{"error": {...}}`."""

    error: ErrorBody


STATUSES = (400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in STATUSES}


def error(
    status: int,
    message: str,
    problems: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error answer in the one shape."""
    body = ErrorResponse(error=ErrorBody(status=status, message=message, problems=problems or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
