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

from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from shared.errors import PermanentError, TransientError

Document = dict[str, Any]

BUSINESSES = "businesses"
API_KEYS = "api_keys"
CUSTOMERS = "customers"
CONVERSATIONS = "conversations"
WIDGETS = "widgets"
RUNS = "runs"
SIDEBARS = "sidebars"
SECRETS = "secrets"
MESSAGES = "messages"


# SQLite under FerretDB answers "database is locked" (SQLITE_BUSY) while another writer
# holds the lock: a moment's contention, not a verdict on the request.
_BUSY_MARKERS = ("SQLITE_BUSY", "database is locked")


class CommandCounter(CommandListener):
    """Counts every command a client sends, by name: the database round trips of a service."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.commands = Counter(
            f"{service}_db_commands_total",
            "Commands sent to MongoDB (each one a round trip), by command name.",
            ["command"],
            registry=registry,
        )

    def started(self, event: CommandStartedEvent) -> None:
        self.commands.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def connect_mongo(url: str, *, app_name: str, commands: CommandCounter | None = None) -> AsyncMongoClient[Document]:
    """Create a client; it connects lazily on first use."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        appname=app_name,
        serverSelectionTimeoutMS=5000,
        event_listeners=[commands] if commands is not None else [],
    )


@contextmanager
def mongo_errors(operation: str) -> Iterator[None]:
    """Translate driver errors: unreachable, timed out or busy is transient, the rest permanent."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except ConnectionFailure as exc:
        raise TransientError(f"MongoDB unavailable during {operation}: {type(exc).__name__}") from exc
    except PyMongoError as exc:
        if exc.timeout:
            raise TransientError(f"MongoDB timed out during {operation}") from exc
        if any(marker in str(exc) for marker in _BUSY_MARKERS):
            raise TransientError(f"MongoDB was busy during {operation}: {exc}") from exc
        raise PermanentError(f"MongoDB rejected {operation}: {exc}") from exc
