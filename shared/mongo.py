"""The MongoDB adapter: client factory, collection names and error translation.

Works on MongoDB 6+ and on FerretDB: it uses no change streams, TTL indexes,
transactions or write concerns. Idempotency comes from inserts with
deterministic ``_id``s, the one write both servers make atomic: FerretDB's
SQLite backend applies updates as read-modify-write outside a transaction
(FerretDB issue #3040), so conditional updates cannot decide a race there.
Hot paths address one document by a filter on ``_id`` alone: FerretDB's SQLite
backend pushes nothing else down, so any other filter, even ``_id`` plus one more
key, scans and decodes the whole collection. (Upstream FerretDB 1.24 scans for
``_id`` alone too: scripts/install-ferretdb.sh patches its index.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bson.errors import BSONError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, InvalidOperation, OperationFailure, PyMongoError
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from shared.errors import PermanentError, TransientError

Document = dict[str, Any]

BUSINESSES = "businesses"
API_KEYS = "api_keys"
CUSTOMERS = "customers"
CONVERSATIONS = "conversations"
WIDGETS = "widgets"
RUNS = "runs"
RUN_HISTORY = "run_history"
SIDEBARS = "sidebars"
SECRETS = "secrets"
MESSAGES = "messages"


# SQLite under FerretDB answers "database is locked" (SQLITE_BUSY) while another writer
# holds the lock: a moment's contention, not a verdict on the request.
_BUSY_MARKERS = ("SQLITE_BUSY", "database is locked")
# Server error codes that say "not now" rather than "never": elections, shutdowns,
# interrupted or conflicting operations, time limits (MongoDB's error_codes.yml).
_TRANSIENT_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        24,  # LockTimeout
        46,  # LockBusy
        50,  # MaxTimeMSExpired
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        112,  # WriteConflict
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
    }
)
_TRANSIENT_LABELS = ("RetryableWriteError", "TransientTransactionError")


# From a millisecond (a find by _id on MongoDB) to the 10 s SQLite waits for its lock.
_COMMAND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class CommandCounter(CommandListener):
    """Counts every command a client sends, by name (the database round trips of a service),
    and times each one as the driver saw it, success or failure."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.commands = Counter(
            f"{service}_db_commands_total",
            "Commands sent to MongoDB (each one a round trip), by command name.",
            ["command"],
            registry=registry,
        )
        self.seconds = Histogram(
            f"{service}_db_command_seconds",
            "Time from sending a MongoDB command to its reply, by command name and outcome (ok, failed).",
            ["command", "outcome"],
            buckets=_COMMAND_BUCKETS,
            registry=registry,
        )

    def started(self, event: CommandStartedEvent) -> None:
        self.commands.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        self.seconds.labels(event.command_name, "ok").observe(event.duration_micros / 1e6)

    def failed(self, event: CommandFailedEvent) -> None:
        self.seconds.labels(event.command_name, "failed").observe(event.duration_micros / 1e6)


def connect_mongo(url: str, *, app_name: str, commands: CommandCounter | None = None) -> AsyncMongoClient[Document]:
    """Create a client; it connects lazily on first use."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        appname=app_name,
        serverSelectionTimeoutMS=5000,
        event_listeners=[commands] if commands is not None else [],
    )


def classify(exc: PyMongoError | BSONError, operation: str) -> TransientError | PermanentError:
    """What a driver error means for the message being handled: unreachable, timed out,
    busy, interrupted or between primaries is transient; the rest is a verdict on the request."""
    if isinstance(exc, ConnectionFailure):
        return TransientError(f"MongoDB unavailable during {operation}: {type(exc).__name__}")
    if isinstance(exc, InvalidOperation):  # the client was closed under us: shutting down
        return TransientError(f"MongoDB client closed during {operation}")
    if isinstance(exc, PyMongoError) and exc.timeout:
        return TransientError(f"MongoDB timed out during {operation}")
    if isinstance(exc, OperationFailure) and (
        exc.code in _TRANSIENT_CODES or any(exc.has_error_label(label) for label in _TRANSIENT_LABELS)
    ):
        return TransientError(f"MongoDB could not serve {operation} now (code {exc.code}): {exc}")
    if any(marker in str(exc) for marker in _BUSY_MARKERS):
        return TransientError(f"MongoDB was busy during {operation}: {exc}")
    return PermanentError(f"MongoDB rejected {operation}: {exc}")


@contextmanager
def mongo_errors(operation: str) -> Iterator[None]:
    """Translate driver errors into the services' two kinds (``classify``); a duplicate key
    is an answer, not a failure, and passes through."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except (PyMongoError, BSONError) as exc:
        raise classify(exc, operation) from exc
