"""Request text must be Unicode that UTF-8 can encode; a lone surrogate is a 422 naming where it is.

JSON can carry a lone surrogate as an escape (``"\\ud800"``) and Python decodes it,
but it has no UTF-8 encoding: storing it in MongoDB, echoing it in a JSON response
or sealing it as a secret would each fail with a 500. Every request model refuses
it before a handler runs.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Location = tuple[str | int, ...]
T = TypeVar("T")

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    # A valid pair never reaches here as two code points: json.loads joins it into one.
    return _LONE_SURROGATE.search(text) is not None


def lone_surrogate_error(*, in_key: bool = False) -> PydanticCustomError:
    if in_key:
        # The key itself cannot be named: pydantic would mangle it in the location.
        return PydanticCustomError("lone_surrogate", "keys must be valid Unicode (no lone surrogates)")
    return PydanticCustomError("lone_surrogate", "text must be valid Unicode (no lone surrogates)")


def invalid_at(location: Location, error: PydanticCustomError, value: Any) -> ValidationError:
    """An error at ``location`` inside the value being validated: pydantic prefixes it with the field's own."""
    return ValidationError.from_exception_data("request", [InitErrorDetails(type=error, loc=location, input=value)])


def refuse_lone_surrogates(value: T) -> T:
    """``value``, a decoded JSON value, unchanged; a ValidationError at the first text with a lone surrogate."""
    found = _lone_surrogate_at(value, ())
    if found is not None:
        location, in_key = found
        raise invalid_at(location, lone_surrogate_error(in_key=in_key), value)
    return value


def _lone_surrogate_at(value: Any, location: Location) -> tuple[Location, bool] | None:
    """Where the first lone surrogate is, and whether it is in a key (then the location is the key's object)."""
    # Iterative: json.loads accepts nesting deep enough to overflow a recursive walk.
    pending: list[tuple[Any, Location]] = [(value, location)]
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return at, False
        elif isinstance(item, dict):
            for key, child in item.items():
                if has_lone_surrogate(key):
                    return at, True
                pending.append((child, (*at, key)))
        elif isinstance(item, list):
            pending.extend((child, (*at, index)) for index, child in enumerate(item))
    return None
