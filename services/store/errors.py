"""The store's errors and how each reads over HTTP.

Every error response is ``{"detail": "<one clear sentence>"}``; the code check
adds ``line``. Bad input is always a 4xx, never a 500: validation errors name
their location (``body.timeout_s: ...``), undecodable JSON is a 400, a broker or
database outage a 503.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import structlog
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from shared.contracts.errors import describe_errors
from shared.errors import TransientError
from shared.ids import ID_PATTERN
from store.code_check import CodeCheckError

log = structlog.get_logger(__name__)

_ID_RULE = "expected an id of 1-128 characters from A-Z, a-z, 0-9, '_' and '-'"
_JSON_BODY_RULE = "expected a JSON object sent with Content-Type: application/json"
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class StoreError(Exception):
    """A domain error the HTTP layer turns into a 4xx with this message."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(StoreError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(StoreError):
    status_code = status.HTTP_409_CONFLICT


class NoExecutorAnswer(StoreError):
    """A test run got no reply in time: no executor is running, or all are busy."""

    status_code = status.HTTP_504_GATEWAY_TIMEOUT

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"no executor answered within {waited_s:g} s — is an executor running?")
        self.waited_s = waited_s


def describe_request_errors(errors: Sequence[Any]) -> str:
    """One sentence naming every invalid location, with a readable rule for ids."""
    details: list[ErrorDetails] = []
    for error in errors:
        detail = cast(ErrorDetails, dict(error))
        # describe_errors prefers its own wording for known types, so a reworded error gets its own type.
        if detail["type"] == "string_pattern_mismatch" and (detail.get("ctx") or {}).get("pattern") == ID_PATTERN:
            detail["type"], detail["msg"] = "id_pattern", _ID_RULE
        elif _is_raw_body(detail):
            detail["type"], detail["msg"] = "json_body_expected", _JSON_BODY_RULE
        details.append(detail)
    return describe_errors(details)


def _is_raw_body(error: ErrorDetails) -> bool:
    # FastAPI hands a body with a non-JSON content type to validation as bytes.
    return tuple(error["loc"]) == ("body",) and isinstance(error.get("input"), bytes | bytearray)


def _json_error(status_code: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code, headers=headers)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = cast(RequestValidationError, exc).errors()
    invalid_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        reason = (invalid_json.get("ctx") or {}).get("error", "invalid JSON")
        position = invalid_json["loc"][-1]
        return _json_error(
            status.HTTP_400_BAD_REQUEST, f"request body is not valid JSON: {reason} (at character {position})"
        )
    return _json_error(status.HTTP_422_UNPROCESSABLE_CONTENT, describe_request_errors(errors))


async def _on_store_error(_: Request, exc: Exception) -> JSONResponse:
    error = cast(StoreError, exc)
    return _json_error(error.status_code, error.detail)


async def _on_code_check_error(_: Request, exc: Exception) -> JSONResponse:
    error = cast(CodeCheckError, exc)
    return _json_error(status.HTTP_422_UNPROCESSABLE_CONTENT, error.message, line=error.line)


async def _on_transient_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency.unavailable", error=str(exc))
    return _json_error(
        status.HTTP_503_SERVICE_UNAVAILABLE, "a dependency (broker or database) is unavailable; retry shortly"
    )


async def _on_method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's Allow names the first route on the path only, and most paths here have several.
    methods = [method for method in _METHODS if _routed(request, method)]
    headers = cast(StarletteHTTPException, exc).headers or {}
    allow = ", ".join(methods) if methods else headers.get("Allow", "")
    return _json_error(status.HTTP_405_METHOD_NOT_ALLOWED, "Method Not Allowed", headers={"Allow": allow})


def _routed(request: Request, method: str) -> bool:
    """Whether a route (not a mount, which takes any method) takes ``method`` on this path."""
    scope = {**request.scope, "method": method}
    routes = (route for route in request.app.router.routes if not isinstance(route, Mount))
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


async def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the server logs the traceback once.
    return _json_error(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _on_method_not_allowed)
    app.add_exception_handler(StoreError, _on_store_error)
    app.add_exception_handler(CodeCheckError, _on_code_check_error)
    app.add_exception_handler(TransientError, _on_transient_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
