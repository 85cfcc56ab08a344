"""Free-form ``attributes`` of customers and conversations, limited to what the database can store.

Any JSON object is accepted except what BSON or FerretDB refuses: keys that
start with ``$`` or contain ``.`` or NUL, integers beyond 64 bits, NaN and
infinities, lone surrogates, an array directly inside an array, and nesting
deeper than ``MAX_ATTRIBUTE_DEPTH``. MongoDB stores nested arrays but FerretDB
does not, so they are refused on both: the API behaves the same whichever
serves it. Each refusal is a 422 naming the place (``body.attributes.rows[0]``)
instead of a 500 from the database.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from store.text import Location, has_lone_surrogate, invalid_at, lone_surrogate_error

MAX_ATTRIBUTE_DEPTH = 16

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _problem(value: Any, depth: int, location: Location, in_array: bool) -> tuple[Location, PydanticCustomError] | None:
    """The first thing in ``value`` BSON cannot hold, and where it is."""
    if depth > MAX_ATTRIBUTE_DEPTH:
        error = PydanticCustomError("too_deep", "nested more than {depth} levels deep", {"depth": MAX_ATTRIBUTE_DEPTH})
        return (), error
    if isinstance(value, dict):
        for key, item in value.items():
            if has_lone_surrogate(key):
                return location, lone_surrogate_error(in_key=True)
            if key.startswith("$") or "." in key or "\x00" in key:
                return location, PydanticCustomError(
                    "attribute_key", "key '{key}' must not start with '$' or contain '.' or NUL", {"key": key}
                )
            found = _problem(item, depth + 1, (*location, key), in_array=False)
            if found is not None:
                return found
    elif isinstance(value, list):
        if in_array:
            return location, PydanticCustomError(
                "nested_array", "an array must not directly contain an array; wrap the inner one in an object"
            )
        for index, item in enumerate(value):
            found = _problem(item, depth + 1, (*location, index), in_array=True)
            if found is not None:
                return found
    elif isinstance(value, str):
        if has_lone_surrogate(value):
            return location, lone_surrogate_error()
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        return location, PydanticCustomError("attribute_int", "integers must fit in 64 bits")
    elif isinstance(value, float) and not math.isfinite(value):
        return location, PydanticCustomError("attribute_float", "numbers must be finite (no NaN or Infinity)")
    return None


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    found = _problem(value, 1, (), in_array=False)
    if found is not None:
        location, error = found
        raise invalid_at(location, error, value)
    return value


Attributes = Annotated[dict[str, Any], AfterValidator(_storable)]
