"""The store's readiness: serving, with its broker connection up and its database reachable."""

from __future__ import annotations

import httpx

from store.dependencies import open_store
from store.settings import StoreSettings


async def test_the_store_is_ready_once_its_connections_are_open(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"serving": True, "mongodb": True, "broker": True}}


async def test_a_closed_store_is_not_ready(settings: StoreSettings) -> None:
    async with open_store(settings) as deps:
        assert all(deps.health.checks().values())

    assert deps.health.checks() == {"serving": False, "mongodb": False, "broker": False}
