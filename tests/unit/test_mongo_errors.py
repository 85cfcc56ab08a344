"""Each driver error class, classified by what it is: unreachable, timed out, busy,
interrupted or between primaries is transient (retried, then redelivered); the rest is
a verdict on the request (dead-lettered at once)."""

from __future__ import annotations

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    CursorNotFound,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
    WriteConcernError,
    WriteError,
    WTimeoutError,
)

from shared.errors import PermanentError, TransientError
from shared.mongo import mongo_errors

TRANSIENT: list[tuple[str, BaseException]] = [
    ("connection failure", ConnectionFailure("connection refused")),
    ("auto reconnect", AutoReconnect("connection reset by peer")),
    ("network timeout", NetworkTimeout("timed out")),
    ("server selection timeout", ServerSelectionTimeoutError("No servers found yet")),
    ("not primary", NotPrimaryError("not primary", {"code": 10107})),
    ("pool wait queue timeout", WaitQueueTimeoutError("timed out waiting for a connection")),
    ("maxTimeMS expired", ExecutionTimeout("operation exceeded time limit", 50)),
    ("write concern timeout", WTimeoutError("waiting for replication timed out", 64, {"wtimeout": True})),
    ("FerretDB SQLITE_BUSY", OperationFailure("database is locked (5) (SQLITE_BUSY)", 1)),
    ("FerretDB SQLITE_BUSY in a write", WriteError("sqlite: step: database is locked", 1)),
    ("primary stepped down", OperationFailure("stepped down", 189)),
    ("shutdown in progress", OperationFailure("shutting down", 91)),
    ("interrupted at shutdown", OperationFailure("interrupted", 11600)),
    ("write conflict", WriteError("write conflict", 112)),
    ("lock timeout", OperationFailure("lock timeout", 24)),
    ("retryable write label", OperationFailure("x", 9999, {"errorLabels": ["RetryableWriteError"]})),
    ("transient transaction label", OperationFailure("x", 9998, {"errorLabels": ["TransientTransactionError"]})),
    ("client closed under us", InvalidOperation("Cannot use AsyncMongoClient after close")),
]

PERMANENT: list[tuple[str, BaseException]] = [
    ("bad value", OperationFailure("invalid document", 2)),
    ("write error", WriteError("Document failed validation", 121)),
    ("nested arrays refused by FerretDB", WriteError("nested arrays are not supported", 2)),
    ("bulk write error", BulkWriteError({"writeErrors": [{"code": 2, "errmsg": "bad"}]})),
    ("write concern error", WriteConcernError("no such write concern", 79)),
    ("unauthorized", OperationFailure("not authorized on sidebar", 13)),
    ("cursor not found", CursorNotFound("cursor id not found", 43)),
    ("configuration", ConfigurationError("unknown option")),
    ("document too large", DocumentTooLarge("BSON document too large")),
    ("invalid document", InvalidDocument("cannot encode object")),
    ("any other driver error", PyMongoError("something else")),
]


def _raised(exc: BaseException) -> BaseException:
    with pytest.raises((TransientError, PermanentError)) as caught, mongo_errors("create run"):
        raise exc
    assert caught.value.__cause__ is exc, "the driver error stays attached for the logs"
    return caught.value


@pytest.mark.parametrize(("name", "exc"), TRANSIENT, ids=[name for name, _ in TRANSIENT])
def test_transient_driver_errors(name: str, exc: BaseException) -> None:
    error = _raised(exc)
    assert type(error) is TransientError
    assert "create run" in str(error)


@pytest.mark.parametrize(("name", "exc"), PERMANENT, ids=[name for name, _ in PERMANENT])
def test_permanent_driver_errors(name: str, exc: BaseException) -> None:
    error = _raised(exc)
    assert type(error) is PermanentError
    assert str(error).startswith("MongoDB rejected create run")


def test_a_duplicate_key_is_an_answer_and_passes_through() -> None:
    with pytest.raises(DuplicateKeyError), mongo_errors("create run"):
        raise DuplicateKeyError("E11000 duplicate key", 11000)


def test_errors_that_are_not_the_drivers_pass_through() -> None:
    with pytest.raises(KeyError), mongo_errors("create run"):
        raise KeyError("a bug, not the database")
