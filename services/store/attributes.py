"""Free-form ``attributes`` of customers and conversations, limited to what the database can store.

Any JSON object is accepted except what BSON (or FerretDB) refuses: keys that
start with ``$`` or contain ``.`` or NUL, integers beyond 64 bits, NaN and
infinities, lone surrogates, and nesting deeper than ``MAX_ATTRIBUTE_DEPTH``.
Refusing them here keeps such input a 422 naming the field instead of a 500.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

MAX_ATTRIBUTE_DEPTH = 16

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_storable(value: Any, depth: int) -> None:
    """Reject what BSON cannot hold: odd keys, ints beyond 64 bits, NaN and infinities, lone surrogates."""
    if depth > MAX_ATTRIBUTE_DEPTH:
        raise PydanticCustomError("too_deep", "nested more than {depth} levels deep", {"depth": MAX_ATTRIBUTE_DEPTH})
    if isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            if key.startswith("$") or "." in key or "\x00" in key:
                raise PydanticCustomError(
                    "attribute_key", "key '{key}' must not start with '$' or contain '.' or NUL", {"key": key}
                )
            _check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth + 1)
    elif isinstance(value, str):
        _check_text(value)
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        raise PydanticCustomError("attribute_int", "integers must fit in 64 bits")
    elif isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("attribute_float", "numbers must be finite (no NaN or Infinity)")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PydanticCustomError("attribute_text", "text must be valid Unicode (no lone surrogates)") from exc


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    _check_storable(value, 1)
    return value


Attributes = Annotated[dict[str, Any], AfterValidator(_storable)]
