"""Tenant isolation: a business's key opens its own routes only, and data never crosses businesses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractQueue

from shared.broker import Broker
from shared.topology import CONVERSATION_OPENED_KEY, EXCHANGE
from store.dependencies import StoreDependencies
from store.settings import StoreSettings
from tests.store.conftest import WIDGET_CODE, NewTenant, Tenant

# Every business route, as (method, path under /v1/businesses/{b}, JSON body).
BUSINESS_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("PUT", "/customers/cust", {"name": "Mallory"}),
    ("GET", "/customers/cust", None),
    ("PUT", "/conversations/conv", {"subject": "overwritten"}),
    ("GET", "/conversations", None),
    ("GET", "/conversations/conv", None),
    ("GET", "/conversations/by-public-id/pub", None),
    ("POST", "/conversations/conv/open", None),
    ("GET", "/conversations/conv/sidebar", None),
    ("GET", "/conversations/conv/sidebars", None),
    ("POST", "/widgets", {"name": "Injected", "code": WIDGET_CODE}),
    ("GET", "/widgets", None),
    ("GET", "/widgets/w", None),
    ("PATCH", "/widgets/w", {"name": "renamed"}),
    ("DELETE", "/widgets/w", None),
    ("POST", "/widgets/w/test", {"conversation_id": "conv"}),
]


async def seed(client: httpx.AsyncClient, owner: Tenant) -> None:
    for method, path, body in (
        ("PUT", "/customers/cust", {"name": "Bob"}),
        ("PUT", "/conversations/conv", {"public_id": "pub", "customer_id": "cust", "subject": "Hello"}),
        ("POST", "/widgets", {"widget_id": "w", "name": "CRM", "code": WIDGET_CODE}),
    ):
        response = await client.request(method, owner.path(path), json=body, headers=owner.headers)
        assert response.status_code == 201, response.text


async def snapshot(client: httpx.AsyncClient, owner: Tenant) -> list[Any]:
    paths = ("", "/customers/cust", "/conversations", "/widgets")
    return [(await client.get(owner.path(p), headers=owner.headers)).json() for p in paths]


@pytest.fixture
async def opened_events(settings: StoreSettings) -> AsyncIterator[AbstractQueue]:
    broker = await Broker.connect(settings.rabbitmq_url.get_secret_value(), prefetch=10, name="store-tests")
    try:
        queue = await broker.consume_channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(EXCHANGE, routing_key=CONVERSATION_OPENED_KEY)
        yield queue
    finally:
        await broker.close()


@pytest.mark.parametrize(("method", "path", "body"), BUSINESS_ROUTES, ids=[f"{m} {p}" for m, p, _ in BUSINESS_ROUTES])
async def test_a_key_of_another_business_is_forbidden_and_changes_nothing(
    client: httpx.AsyncClient,
    new_tenant: NewTenant,
    opened_events: AbstractQueue,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    victim, intruder = await new_tenant(), await new_tenant()
    await seed(client, victim)
    before = await snapshot(client, victim)

    response = await client.request(method, victim.path(path), json=body, headers=intruder.headers)

    assert response.status_code == 403
    assert response.json() == {"detail": f"this API key does not grant access to business {victim.business_id!r}"}
    assert await snapshot(client, victim) == before
    # The store publishes with confirms before it answers, so an event would already be queued.
    assert await opened_events.get(fail=False) is None


async def test_the_same_ids_in_two_businesses_are_separate_resources(
    client: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    first, second = await new_tenant(), await new_tenant()
    await seed(client, first)

    widget = await client.get(second.path("/widgets/w"), headers=second.headers)
    conversation = await client.get(second.path("/conversations/by-public-id/pub"), headers=second.headers)
    listed = await client.get(second.path("/conversations"), headers=second.headers)

    assert widget.status_code == 404
    assert conversation.status_code == 404
    assert listed.json() == []
    await seed(client, second)
    renamed = await client.patch(second.path("/widgets/w"), json={"name": "Second"}, headers=second.headers)
    assert renamed.status_code == 200
    assert (await client.get(first.path("/widgets/w"), headers=first.headers)).json()["name"] == "CRM"


async def test_repositories_return_nothing_of_another_business_even_without_auth(
    client: httpx.AsyncClient, new_tenant: NewTenant, deps: StoreDependencies
) -> None:
    owner, other = await new_tenant(), await new_tenant()
    await seed(client, owner)

    assert await deps.widgets.get(owner.business_id, "w") is not None
    assert await deps.widgets.get(other.business_id, "w") is None
    assert await deps.widgets.update(other.business_id, "w", {"name": "stolen"}) is None
    assert await deps.widgets.delete(other.business_id, "w") is False
    assert await deps.customers.get(other.business_id, "cust") is None
    assert await deps.conversations.get(other.business_id, "conv") is None
    assert await deps.conversations.by_public_id(other.business_id, "pub") is None
    assert await deps.conversations.context(other.business_id, "conv") is None
    assert await deps.sidebars.history(other.business_id, "conv", 10) == []
    widget = await deps.widgets.get(owner.business_id, "w")
    assert widget is not None
    assert widget.name == "CRM"
