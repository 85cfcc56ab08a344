"""Real-infrastructure helpers for tests: a RabbitMQ vhost and a MongoDB database per run.

Missing infrastructure fails the run with a usage error; it is never skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from pymongo import MongoClient

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017/"


@dataclass(frozen=True)
class Infra:
    rabbitmq_url: str
    mongodb_url: str
    mongodb_database: str

    def env(self) -> dict[str, str]:
        """Environment variables that point a service process at this test run."""
        return {
            "RABBITMQ_URL": self.rabbitmq_url,
            "MONGODB_URL": self.mongodb_url,
            "MONGODB_DATABASE": self.mongodb_database,
        }


def _require_port(url: str, default_port: int, what: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        raise pytest.UsageError(f"{what} is not answering at {host}:{port} ({exc}); run `make services` first") from exc


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise pytest.UsageError(
            f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}"
        )


@contextmanager
def provision_infra() -> Iterator[Infra]:
    base_amqp = os.environ.get("RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
    base_mongo = os.environ.get("MONGODB_URL", DEFAULT_MONGODB_URL)
    _require_port(base_amqp, 5672, "RabbitMQ")
    _require_port(base_mongo, 27017, "MongoDB (FerretDB)")
    run_id = uuid.uuid4().hex[:10]
    vhost = f"sidebar-test-{run_id}"
    user = urlsplit(base_amqp).username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    parts = urlsplit(base_amqp)
    amqp_url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))
    database = f"sidebar_test_{run_id}"
    try:
        yield Infra(rabbitmq_url=amqp_url, mongodb_url=base_mongo, mongodb_database=database)
    finally:
        _rabbitmqctl("delete_vhost", vhost)
        with MongoClient(base_mongo, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(database)
