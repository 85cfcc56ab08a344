"""Customers and conversations: upserts, reads by id and public id, listing, and their stored shape."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared.context import load_context
from shared.ids import scoped_key
from shared.mongo import CONVERSATIONS, CUSTOMERS, Document
from tests.store.conftest import NewTenant, Tenant

CUSTOMER = {"email": "ada@example.com", "name": "Ada", "phone": "+44 20 0000", "attributes": {"tier": "gold"}}
CONVERSATION = {
    "public_id": "1042",
    "customer_id": "cust-1",
    "channel": "email",
    "subject": "Where is my order?",
    "status": "open",
    "attributes": {"order": {"id": 7, "items": ["a", "b"]}},
}


async def put(client: httpx.AsyncClient, tenant: Tenant, path: str, body: Mapping[str, Any]) -> httpx.Response:
    return await client.put(tenant.path(path), json=body, headers=tenant.headers)


async def test_a_customer_is_created_then_replaced(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await put(client, tenant, "/customers/cust-1", CUSTOMER)
    replaced = await put(client, tenant, "/customers/cust-1", {"email": "new@example.com"})

    assert created.status_code == 201
    assert {k: created.json()[k] for k in CUSTOMER} == CUSTOMER
    assert replaced.status_code == 200
    body = replaced.json()
    assert (body["email"], body["name"], body["phone"], body["attributes"]) == ("new@example.com", None, None, {})
    read = await client.get(tenant.path("/customers/cust-1"), headers=tenant.headers)
    assert read.status_code == 200
    assert read.json() == body


async def test_the_stored_customer_has_the_shape_the_orchestrator_reads(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    await put(client, tenant, "/customers/cust-1", {"name": "Ada"})

    stored = await db[CUSTOMERS].find_one({"_id": scoped_key(tenant.business_id, "cust-1")})

    assert stored is not None
    assert set(stored) == {"_id", "business_id", "customer_id", "email", "name", "phone", "attributes", "updated_at"}
    assert (stored["business_id"], stored["customer_id"], stored["email"]) == (tenant.business_id, "cust-1", None)


async def test_an_unknown_customer_is_not_found(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path("/customers/nobody"), headers=tenant.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "customer 'nobody' not found"}


async def test_a_conversation_is_created_then_replaced_keeping_created_at(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await put(client, tenant, "/conversations/conv-1", CONVERSATION)
    replaced = await put(client, tenant, "/conversations/conv-1", {"status": "closed"})

    assert created.status_code == 201
    assert {k: created.json()[k] for k in CONVERSATION} == CONVERSATION
    assert replaced.status_code == 200
    body = replaced.json()
    assert (body["status"], body["public_id"], body["subject"], body["attributes"]) == ("closed", None, None, {})
    assert body["created_at"] == created.json()["created_at"]
    assert body["updated_at"] >= body["created_at"]


async def test_a_conversation_is_read_by_id_and_by_public_id(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = (await put(client, tenant, "/conversations/conv-1", CONVERSATION)).json()

    by_id = await client.get(tenant.path("/conversations/conv-1"), headers=tenant.headers)
    by_public_id = await client.get(tenant.path("/conversations/by-public-id/1042"), headers=tenant.headers)

    assert by_id.status_code == 200
    assert by_id.json() == created
    assert by_public_id.status_code == 200
    assert by_public_id.json() == created


async def test_unknown_conversations_are_not_found(client: httpx.AsyncClient, tenant: Tenant) -> None:
    by_id = await client.get(tenant.path("/conversations/nope"), headers=tenant.headers)
    by_public_id = await client.get(tenant.path("/conversations/by-public-id/9999"), headers=tenant.headers)

    assert by_id.status_code == 404
    assert by_id.json() == {"detail": "conversation 'nope' not found"}
    assert by_public_id.status_code == 404
    assert by_public_id.json() == {"detail": "no conversation has public id '9999'"}


async def test_a_public_id_used_by_another_conversation_is_a_conflict(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await put(client, tenant, "/conversations/conv-1", {"public_id": "1042"})

    duplicate = await put(client, tenant, "/conversations/conv-2", {"public_id": "1042"})
    same_conversation = await put(client, tenant, "/conversations/conv-1", {"public_id": "1042", "status": "open"})

    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "public id '1042' is already used by conversation 'conv-1'"}
    assert same_conversation.status_code == 200
    missing = await client.get(tenant.path("/conversations/conv-2"), headers=tenant.headers)
    assert missing.status_code == 404


async def test_public_ids_are_unique_per_business_only(
    client: httpx.AsyncClient, tenant: Tenant, new_tenant: NewTenant
) -> None:
    other = await new_tenant()
    await put(client, tenant, "/conversations/conv-1", {"public_id": "1042"})

    response = await put(client, other, "/conversations/conv-1", {"public_id": "1042"})

    assert response.status_code == 201


async def test_conversations_are_listed_newest_first_with_a_limit(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for conversation_id in ("first", "second", "third"):
        assert (await put(client, tenant, f"/conversations/{conversation_id}", {})).status_code == 201

    everything = await client.get(tenant.path("/conversations"), headers=tenant.headers)
    limited = await client.get(tenant.path("/conversations"), params={"limit": 2}, headers=tenant.headers)
    too_many = await client.get(tenant.path("/conversations"), params={"limit": 201}, headers=tenant.headers)

    ids = [c["conversation_id"] for c in everything.json()]
    created = [datetime.fromisoformat(c["created_at"]) for c in everything.json()]
    assert sorted(ids) == ["first", "second", "third"]
    assert created == sorted(created, reverse=True)
    assert [c["conversation_id"] for c in limited.json()] == ids[:2]
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == "query.limit: input should be less than or equal to 200"


async def test_the_stored_conversation_gives_the_widget_context(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    await put(client, tenant, "/customers/cust-1", CUSTOMER)
    await put(client, tenant, "/conversations/conv-1", CONVERSATION)

    stored = await db[CONVERSATIONS].find_one({"_id": scoped_key(tenant.business_id, "conv-1")})
    context = await load_context(db, tenant.business_id, "conv-1")

    assert stored is not None
    assert set(stored) == {
        "_id",
        "business_id",
        "conversation_id",
        "public_id",
        "customer_id",
        "channel",
        "subject",
        "status",
        "attributes",
        "created_at",
        "updated_at",
    }
    assert context is not None
    assert context.conversation["id"] == "conv-1"
    assert context.conversation["public_id"] == "1042"
    assert context.customer is not None
    assert context.customer["email"] == "ada@example.com"
    assert context.business == {"id": tenant.business_id, "name": "Acme"}


async def test_attribute_keys_the_database_cannot_store_are_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    dotted = await put(client, tenant, "/customers/cust-1", {"attributes": {"a.b": 1}})
    dollar = await put(client, tenant, "/conversations/conv-1", {"attributes": {"nested": [{"$where": 1}]}})

    assert dotted.status_code == 422
    assert dotted.json()["detail"] == "body.attributes: key 'a.b' must not start with '$' or contain '.' or NUL"
    assert dollar.status_code == 422
    assert dollar.json()["detail"] == (
        "body.attributes.nested[0]: key '$where' must not start with '$' or contain '.' or NUL"
    )


async def test_deeply_nested_attributes_are_a_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    nested: dict[str, object] = {}
    for _ in range(40):
        nested = {"a": nested}

    response = await put(client, tenant, "/customers/cust-1", {"attributes": nested})

    assert response.status_code == 422
    assert response.json()["detail"] == "body.attributes: nested more than 16 levels deep"


async def test_attribute_values_the_database_cannot_store_are_a_422_naming_where_they_are(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    cases = {
        b'{"attributes": {"n": 100000000000000000000000}}': "body.attributes.n: integers must fit in 64 bits",
        b'{"attributes": {"n": NaN}}': "body.attributes.n: numbers must be finite (no NaN or Infinity)",
        b'{"attributes": {"n": [-Infinity]}}': "body.attributes.n[0]: numbers must be finite (no NaN or Infinity)",
        b'{"attributes": {"\\ud800": 1}}': "body.attributes: keys must be valid Unicode (no lone surrogates)",
        b'{"attributes": {"s": ["\\udfff"]}}': "body.attributes.s[0]: text must be valid Unicode (no lone surrogates)",
    }
    headers = {**tenant.headers, "Content-Type": "application/json"}
    for body, detail in cases.items():
        response = await client.put(tenant.path("/customers/cust-1"), content=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json() == {"detail": detail}


NESTED_ARRAY_RULE = "an array must not directly contain an array; wrap the inner one in an object"


@pytest.mark.parametrize(
    ("attributes", "place"),
    [
        ({"matrix": [[1, 2], [3, 4]]}, "body.attributes.matrix[0]"),
        ({"rows": [1, []]}, "body.attributes.rows[1]"),
        ({"order": {"lines": [{"sizes": [["S", "M"]]}]}}, "body.attributes.order.lines[0].sizes[0]"),
    ],
)
async def test_an_array_inside_an_array_is_a_422_naming_the_inner_array(
    client: httpx.AsyncClient, tenant: Tenant, attributes: dict[str, object], place: str
) -> None:
    """FerretDB cannot store one and MongoDB can: refusing it on both keeps the API the same on either."""
    for resource in ("customers", "conversations"):
        response = await put(client, tenant, f"/{resource}/nested", {"attributes": attributes})

        assert response.status_code == 422, response.text
        assert response.json() == {"detail": f"{place}: {NESTED_ARRAY_RULE}"}
        assert (await client.get(tenant.path(f"/{resource}/nested"), headers=tenant.headers)).status_code == 404


async def test_arrays_of_objects_holding_arrays_are_stored_and_read_back(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    """The documented way round the rule: an array of objects, each holding its own array."""
    attributes = {"matrix": [{"row": [1, 2]}, {"row": [3, 4]}], "tags": ["a", "b"], "empty": []}

    response = await put(client, tenant, "/customers/wrapped", {"attributes": attributes})
    stored = await db[CUSTOMERS].find_one({"_id": scoped_key(tenant.business_id, "wrapped")})

    assert response.status_code == 201, response.text
    assert response.json()["attributes"] == attributes
    assert stored is not None and stored["attributes"] == attributes


async def test_concurrent_first_writes_of_one_customer_or_conversation_all_succeed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Racing upserts collide on insert; the loser's write is retried as an update, not a 500."""
    for resource in ("customers", "conversations"):
        responses = await asyncio.gather(
            *(put(client, tenant, f"/{resource}/raced", {"attributes": {"writer": i}}) for i in range(10))
        )

        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 201}, statuses
        assert 201 in statuses
        final = await client.get(tenant.path(f"/{resource}/raced"), headers=tenant.headers)
        assert final.json()["attributes"]["writer"] in range(10)
