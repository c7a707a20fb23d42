"""The JSON error shape {"error": {"code", "message", "field"?, "details"}} and its handlers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("artgen.api")

# Status codes that have no more specific code of ours.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    """One invalid field and why."""

    field: str
    message: str


class ErrorInfo(BaseModel):
    """A stable code, a message saying what to fix, and the field(s) concerned."""

    code: str
    message: str
    field: str | None = None
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: ErrorInfo


class ApiError(StarletteHTTPException):
    """An error answered in the JSON shape (an HTTPException, so FastAPI re-raises it)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.field = field
        self.details = details


class PayloadTooLarge(ApiError):
    """The request body went over the upload limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"request body is larger than the limit of {limit} bytes",
        )


def error_body(
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The JSON body of an error answer."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if details is None:
        # Always a list, so clients read one shape: the field named, or none.
        details = [{"field": field, "message": message}] if field is not None else []
    error["details"] = details
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse carrying the error shape."""
    body = error_body(code, message, field=field, details=details)
    return JSONResponse(body, status_code=status_code, headers=headers)


def _field_name(loc: Sequence[Any]) -> str:
    """A dotted field name from a pydantic location, without the 'body'/'query' prefix."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _clean_message(error: dict[str, Any]) -> str:
    """Pydantic's message, minus its 'Value error, ' prefix; a plain one for unknown fields."""
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    if error.get("type") == "missing":
        return "field required"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def validation_details(errors: Sequence[Any], prefix: Sequence[str] = ()) -> list[dict[str, str]]:
    """`details` entries [{field, message}] from pydantic errors."""
    details = []
    for error in errors:
        loc = tuple(prefix) + tuple(error.get("loc", ()))
        details.append({"field": _field_name(loc), "message": _clean_message(error)})
    return details


def validation_error(errors: Sequence[Any], prefix: Sequence[str] = ()) -> ApiError:
    """A 422 ApiError from pydantic errors, naming the first field in the message."""
    details = validation_details(errors, prefix) or [{"field": "body", "message": "invalid"}]
    first = details[0]
    return ApiError(
        422,
        "validation_error",
        f"{first['field']}: {first['message']}",
        field=first["field"],
        details=details,
    )


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status_code,
        exc.code,
        exc.message,
        field=exc.field,
        details=exc.details,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


async def _request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = validation_error(exc.errors())
    return error_response(422, error.code, error.message, field=error.field, details=error.details)


async def _pydantic_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    error = validation_error(exc.errors())
    return error_response(422, error.code, error.message, field=error.field, details=error.details)


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = _request_id(request)
    logger.error(
        "unhandled error in %s %s (request id %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    message = "internal server error"
    if request_id:
        message += f" (request id {request_id})"
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response(500, "internal_error", message, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the JSON shape; tracebacks go to the log only."""
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(ValidationError, _pydantic_validation_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)
