"""The database check reads what PyMongo's own monitor knows: reachable after the client has
reached the server, unreachable when it cannot, and no command is sent per probe."""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

from shared.health import mongo_reachable
from shared.metrics import new_registry
from shared.mongo import CommandCounter, Document, connect_mongo
from tests.infra import Infra


async def test_a_reachable_database_passes_and_probing_sends_no_command(infra: Infra) -> None:
    registry = new_registry()
    client = connect_mongo(infra.mongodb_url, app_name="readiness-test", commands=CommandCounter(registry, "probe"))
    try:
        reachable = mongo_reachable(client)
        assert reachable() is False, "nothing is known before the first operation"
        await client.admin.command("ping")
        sent = registry.get_sample_value("probe_db_commands_total", {"command": "ping"})

        assert all(reachable() for _ in range(100))
        assert registry.get_sample_value("probe_db_commands_total", {"command": "ping"}) == sent == 1
    finally:
        await client.close()


async def test_a_database_that_cannot_be_reached_fails() -> None:
    # A name that never resolves (RFC 6761): the driver fails before it opens any socket.
    client: AsyncMongoClient[Document] = AsyncMongoClient("mongodb://sidebar-db.invalid/", serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(ServerSelectionTimeoutError):
            await client.admin.command("ping")
        assert mongo_reachable(client)() is False
    finally:
        await client.close()
