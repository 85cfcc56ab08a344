"""A database or broker that cannot be used is a 503 with a clear detail, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from pymongo import AsyncMongoClient

from shared.broker import Broker
from shared.mongo import Document
from store.dependencies import StoreDependencies
from store.events import EventPublisher
from store.push.bindings import FeedBindings
from store.push.feed import BrokerFeed
from store.repositories.businesses import BusinessRepository
from store.settings import StoreSettings
from tests.infra import Infra
from tests.store.conftest import Tenant, store_client

UNAVAILABLE = {"detail": "a dependency (broker or database) is unavailable; retry shortly"}


@pytest.fixture
async def unanswering_mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[Document]]:
    """A real client whose every operation runs out of time (a 1 µs budget) before the server can answer."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(infra.mongodb_url, timeoutMS=0.001)
    try:
        yield client
    finally:
        await client.close()


async def test_a_database_that_does_not_answer_is_a_503(
    settings: StoreSettings,
    deps: StoreDependencies,
    tenant: Tenant,
    infra: Infra,
    unanswering_mongo: AsyncMongoClient[Document],
) -> None:
    broken = replace(deps, businesses=BusinessRepository(unanswering_mongo[infra.mongodb_database]))
    async with store_client(settings, broken) as client:
        response = await client.get(tenant.path("/widgets"), headers=tenant.headers)

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE


async def test_an_unreachable_broker_is_a_503(
    settings: StoreSettings, deps: StoreDependencies, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)
    closed = await Broker.connect(settings.rabbitmq_url.get_secret_value(), prefetch=1, name="closed-broker")
    await closed.close()
    broken = replace(deps, events=EventPublisher(closed, deps.metrics))

    async with store_client(settings, broken) as broken_client:
        response = await broken_client.post(tenant.path("/conversations/conv-1/open"), headers=tenant.headers)

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE


async def test_a_stream_the_feed_cannot_bind_for_is_a_503(
    settings: StoreSettings, deps: StoreDependencies, tenant: Tenant
) -> None:
    broker = await Broker.connect(settings.rabbitmq_url.get_secret_value(), prefetch=1, name="closed-feed")
    feed = await BrokerFeed.start(broker, deps.push, deps.metrics)
    await broker.close()
    broken = replace(deps, feed_bindings=FeedBindings(feed, deps.push, deps.metrics))

    async with store_client(settings, broken) as broken_client:
        response = await broken_client.get(tenant.path("/stream"), headers=tenant.headers)

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert deps.metrics.registry.get_sample_value("store_stream_clients") == 0
