"""``/open`` publishes a valid ``conversation.opened`` on the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shared.broker import Broker
from shared.contracts.catalog import CatalogChanged, decode_catalog_changed
from shared.contracts.events import decode_conversation_opened
from shared.topology import CATALOG_CHANGED_KEY, CONVERSATION_OPENED_KEY, EXCHANGE, INTERNAL_EXCHANGE
from store.settings import StoreSettings
from tests.store.conftest import Tenant


@asynccontextmanager
async def bound_queue(settings: StoreSettings, exchange: str, routing_key: str) -> AsyncIterator[AbstractQueue]:
    """A temporary queue bound like a consumer's, so the test sees what it would."""
    broker = await Broker.connect(settings.rabbitmq_url.get_secret_value(), prefetch=10, name="store-tests")
    try:
        queue = await broker.consume_channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)
        yield queue
    finally:
        await broker.close()


@pytest.fixture
async def opened_queue(settings: StoreSettings) -> AsyncIterator[AbstractQueue]:
    """Bound like the orchestrator's events queue."""
    async with bound_queue(settings, EXCHANGE, CONVERSATION_OPENED_KEY) as queue:
        yield queue


async def next_message(queue: AbstractQueue) -> AbstractIncomingMessage:
    # The store answers only after the broker confirmed the publish, so the message is already queued.
    message = await queue.get(fail=False)
    assert message is not None, "no conversation.opened was published"
    await message.ack()
    return message


async def test_opening_a_conversation_publishes_conversation_opened(
    client: httpx.AsyncClient, tenant: Tenant, opened_queue: AbstractQueue
) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)

    response = await client.post(tenant.path("/conversations/conv-1/open"), headers=tenant.headers)

    assert response.status_code == 202
    event_id = response.json()["event_id"]
    message = await next_message(opened_queue)
    event = decode_conversation_opened(message.body)
    assert (event.event_id, event.business_id, event.conversation_id) == (event_id, tenant.business_id, "conv-1")
    assert event.context is None
    assert abs(datetime.now(UTC) - event.occurred_at) < timedelta(minutes=1)
    assert message.type == "conversation.opened"
    assert message.message_id == event_id
    assert message.headers["schema_version"] == 1
    assert message.content_type == "application/json"
    assert b"agent_id" not in message.body
    assert b"context" not in message.body


async def test_the_agent_is_named_in_the_event_when_given(
    client: httpx.AsyncClient, tenant: Tenant, opened_queue: AbstractQueue
) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)

    response = await client.post(
        tenant.path("/conversations/conv-1/open"), json={"agent_id": "agent-7"}, headers=tenant.headers
    )

    assert response.status_code == 202
    assert decode_conversation_opened((await next_message(opened_queue)).body).agent_id == "agent-7"


async def test_each_open_is_a_new_event(client: httpx.AsyncClient, tenant: Tenant, opened_queue: AbstractQueue) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)

    first = (await client.post(tenant.path("/conversations/conv-1/open"), headers=tenant.headers)).json()
    second = (await client.post(tenant.path("/conversations/conv-1/open"), headers=tenant.headers)).json()

    assert first["event_id"] != second["event_id"]
    published = [decode_conversation_opened((await next_message(opened_queue)).body).event_id for _ in range(2)]
    assert published == [first["event_id"], second["event_id"]]


async def test_opening_an_unknown_conversation_is_a_404_and_publishes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, opened_queue: AbstractQueue
) -> None:
    response = await client.post(tenant.path("/conversations/ghost/open"), headers=tenant.headers)

    assert response.status_code == 404
    assert response.json() == {"detail": "conversation 'ghost' not found"}
    assert await opened_queue.get(fail=False) is None


@pytest.fixture
async def catalog_queue(settings: StoreSettings) -> AsyncIterator[AbstractQueue]:
    """Bound like an orchestrator's catalog queue."""
    async with bound_queue(settings, INTERNAL_EXCHANGE, CATALOG_CHANGED_KEY) as queue:
        yield queue


async def _notices(queue: AbstractQueue) -> list[CatalogChanged]:
    notices = []
    while (message := await queue.get(fail=False)) is not None:
        await message.ack()
        notices.append(decode_catalog_changed(message.body))
    return notices


async def test_every_widget_write_publishes_a_catalog_notice(
    client: httpx.AsyncClient, tenant: Tenant, catalog_queue: AbstractQueue
) -> None:
    code = "def get_sidebar_data(context):\n    return {'title': 'w', 'items': []}\n"
    created = await client.post(
        tenant.path("/widgets"), json={"widget_id": "w", "name": "W", "code": code}, headers=tenant.headers
    )
    edited = await client.patch(tenant.path("/widgets/w"), json={"name": "W2"}, headers=tenant.headers)
    deleted = await client.delete(tenant.path("/widgets/w"), headers=tenant.headers)
    refused = await client.patch(tenant.path("/widgets/w"), json={"name": "W3"}, headers=tenant.headers)

    assert [r.status_code for r in (created, edited, deleted, refused)] == [201, 200, 204, 404]
    notices = await _notices(catalog_queue)
    assert notices == [CatalogChanged(business_id=tenant.business_id, what="widgets")] * 3, "one per write that took"
