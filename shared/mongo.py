"""The MongoDB adapter: client factory, collection names and error translation.

Works on MongoDB 6+ and on FerretDB: it uses no change streams, TTL indexes,
transactions or write concerns. Idempotency comes from inserts with
deterministic ``_id``s, the one write both servers make atomic: FerretDB's
SQLite backend applies updates as read-modify-write outside a transaction
(FerretDB issue #3040), so conditional updates cannot decide a race there.
Hot paths read by ``_id`` only: FerretDB's SQLite backend pushes nothing else
down, so any other filter scans and decodes the whole collection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from shared.errors import PermanentError, TransientError

Document = dict[str, Any]

BUSINESSES = "businesses"
API_KEYS = "api_keys"
CUSTOMERS = "customers"
CONVERSATIONS = "conversations"
WIDGETS = "widgets"
RUNS = "runs"
RUN_RESULTS = "run_results"
RUN_MARKERS = "run_markers"
RUN_DEADLINES = "run_deadlines"
SIDEBARS = "sidebars"
SECRETS = "secrets"
MESSAGES = "messages"


def connect_mongo(url: str, *, app_name: str) -> AsyncMongoClient[Document]:
    """Create a client; it connects lazily on first use."""
    return AsyncMongoClient(url, tz_aware=True, appname=app_name, serverSelectionTimeoutMS=5000)


@contextmanager
def mongo_errors(operation: str) -> Iterator[None]:
    """Translate driver errors: unreachable or timed out is transient, the rest permanent."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except ConnectionFailure as exc:
        raise TransientError(f"MongoDB unavailable during {operation}: {type(exc).__name__}") from exc
    except PyMongoError as exc:
        if exc.timeout:
            raise TransientError(f"MongoDB timed out during {operation}") from exc
        raise PermanentError(f"MongoDB rejected {operation}: {exc}") from exc
