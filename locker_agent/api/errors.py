"""Every error as one JSON shape (:class:`ErrorBody`) with a message a kiosk can show.

FastAPI's own 404/405/413/422/500 bodies are replaced, so a client never has to parse two
error formats, and an unexpected failure says "try again" without leaking a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from locker_agent.api.schemas import CODE_MAX, CODE_MIN, ErrorBody
from locker_agent.domain.errors import DomainError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal with its HTTP status, stable code and a message for the screen."""

    def __init__(
        self, status: int, message: str, *, code: str, field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.headers = headers


DOMAIN_STATUS = {
    "unknown_compartment": 404,
    "unknown_assignment": 404,
    "session_expired": 404,
}
"""HTTP status for a domain refusal by its code; anything else is 409 (not now, not so)."""


def from_domain(exc: DomainError) -> ApiError:
    return ApiError(DOMAIN_STATUS.get(exc.code, 409), exc.message, code=exc.code, field=exc.field)


_STATUS_MESSAGES = {
    400: ("bad_request", "The request could not be read: send a JSON body in UTF-8."),
    404: ("not_found", "There is nothing here. Go back to the start screen."),
    405: ("method_not_allowed", "That action is not possible here."),
    413: ("too_large", "The request is too large."),
    401: ("unauthorised", "Not authorised."),
}


def error_response(
    status: int, message: str, code: str, field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(message=message, code=code, field=field)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or None
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return "The request is not valid JSON.", None
    if field in ("code", "payload"):
        return (
            f"Please enter a code of {CODE_MIN} to {CODE_MAX} characters "
            "(digits, letters or symbols) and try again.",
            field,
        )
    if kind == "missing":
        return f"{field or 'A value'} is missing.", field
    if kind == "extra_forbidden":
        return f"{field} is not expected here.", field
    detail = str(first.get("msg", "is not valid"))
    return f"{field or 'The request'}: {detail}.", field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.field, exc.headers)

    @app.exception_handler(DomainError)
    async def _refused(request: Request, exc: DomainError) -> JSONResponse:
        """A transition the locker refused: its code, message and field, with its status."""
        refusal = from_domain(exc)
        return error_response(refusal.status, refusal.message, refusal.code, refusal.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _validation_message(list(exc.errors()))
        return error_response(422, message, "invalid_input", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _STATUS_MESSAGES.get(
            exc.status_code, ("http_error", "That request cannot be served.")
        )
        return error_response(exc.status_code, message, code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("API request failed",
                         extra={"fields": {"path": _loggable(request.url.path)}})
        return error_response(
            500, "Something went wrong. Please try again, or call the number on the locker.",
            "internal",
        )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the error responses a route may give."""
    return {status: {"model": ErrorBody} for status in statuses}


def _loggable(path: str) -> str:
    """The path with a courier's session id blanked: it is a bearer secret for that session."""
    return re.sub(r"(/sessions/)[^/]+", r"\1…", path)
