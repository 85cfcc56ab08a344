"""Turn pydantic validation errors into short, path-precise messages.

``items[0].sections[1].fields: expected a mapping`` reads better to a widget
author than pydantic's default multi-line report.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

_MESSAGES = {
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "bool_type": "expected a boolean",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "json_invalid": "invalid JSON",
    "json_type": "expected JSON text",
}


def format_location(loc: Sequence[int | str]) -> str:
    """``("items", 0, "sections", 1, "fields")`` -> ``items[0].sections[1].fields``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}" if path else part
        else:
            path += f"[{part!r}]"
    return path or "(root)"


def _message(error: ErrorDetails) -> str:
    known = _MESSAGES.get(error["type"])
    if known is not None:
        return known
    if error["type"] == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        return f"expected one of {expected}"
    text = error["msg"]
    return text[:1].lower() + text[1:]


def describe_errors(errors: Sequence[ErrorDetails], *, limit: int = 10) -> str:
    parts = [f"{format_location(e['loc'])}: {_message(e)}" for e in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"... and {len(errors) - limit} more")
    return "; ".join(parts)


def describe_validation_error(exc: ValidationError, *, limit: int = 10) -> str:
    return describe_errors(exc.errors(include_url=False), limit=limit)
