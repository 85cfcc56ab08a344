"""OpenAPI descriptions of the error responses routes can give."""

from __future__ import annotations

from store.schemas import CodeCheckErrorResponse, ErrorResponse

ErrorResponses = dict[int | str, dict[str, object]]


def error_responses(*statuses: int) -> ErrorResponses:
    """OpenAPI entries for the error statuses a route can answer with."""
    descriptions = {
        400: "Body is not valid JSON, or it ended (or stopped arriving) before its declared length",
        401: "Missing or unknown API key",
        403: "Key of another business, or the wrong kind of key",
        404: "Not found (in this business)",
        409: "Conflicts with an existing resource",
        413: "Body larger than the limit",
        422: "Schema violation; the detail names the field",
        503: "Broker or database unavailable",
        504: "No executor answered in time",
    }
    responses: ErrorResponses = {}
    for code in statuses:
        responses[code] = {"model": ErrorResponse, "description": descriptions[code]}
    return responses


def code_check_responses() -> ErrorResponses:
    return {422: {"model": CodeCheckErrorResponse, "description": "Schema violation, or code that fails the check"}}
