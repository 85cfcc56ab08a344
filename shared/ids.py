"""Identifier rules shared by every contract: business, conversation and widget ids."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""A business, conversation, customer, widget or event id: 1-128 of ``[A-Za-z0-9_-]``."""


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def scoped_key(business_id: str, local_id: str) -> str:
    """A storage key unique across businesses; ``:`` can never occur inside an id."""
    return f"{business_id}:{local_id}"
