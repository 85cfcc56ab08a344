"""Widget CRUD over HTTP, and the stored document shape the orchestrator depends on."""

from __future__ import annotations

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from shared.ids import scoped_key
from shared.mongo import WIDGETS, Document
from tests.store.conftest import WIDGET_CODE, Tenant

OTHER_CODE = "def get_sidebar_data(context):\n    return {'title': 'Orders', 'items': []}\n"


async def create_widget(client: httpx.AsyncClient, tenant: Tenant, **fields: object) -> httpx.Response:
    body = {"name": "CRM", "code": WIDGET_CODE, **fields}
    return await client.post(tenant.path("/widgets"), json=body, headers=tenant.headers)


async def test_a_widget_is_created_with_every_field(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await create_widget(
        client, tenant, widget_id="crm", active=False, position=3, timeout_s=2.5, name="CRM lookup"
    )

    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("business_id", "widget_id", "name", "code", "active", "position", "timeout_s")} == {
        "business_id": tenant.business_id,
        "widget_id": "crm",
        "name": "CRM lookup",
        "code": WIDGET_CODE,
        "active": False,
        "position": 3,
        "timeout_s": 2.5,
    }
    assert body["created_at"] == body["updated_at"]


async def test_a_widget_gets_defaults_and_a_generated_id(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await create_widget(client, tenant)

    assert response.status_code == 201
    body = response.json()
    assert body["widget_id"]
    assert (body["active"], body["position"], body["timeout_s"]) == (True, 0, 10.0)


async def test_the_stored_widget_has_the_shape_the_orchestrator_reads(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    await create_widget(client, tenant, widget_id="crm", position=2, timeout_s=3)

    stored = await db[WIDGETS].find_one({"business_id": tenant.business_id, "active": True})
    assert stored is not None
    assert set(stored) == {
        "_id",
        "business_id",
        "widget_id",
        "name",
        "code",
        "active",
        "position",
        "timeout_s",
        "created_at",
        "updated_at",
    }
    assert stored["_id"] == scoped_key(tenant.business_id, "crm")
    assert stored["active"] is True
    assert stored["position"] == 2
    assert isinstance(stored["timeout_s"], float)
    assert stored["created_at"].utcoffset().total_seconds() == 0


async def test_a_widget_is_read_back(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = (await create_widget(client, tenant, widget_id="crm")).json()

    response = await client.get(tenant.path("/widgets/crm"), headers=tenant.headers)

    assert response.status_code == 200
    assert response.json() == created


async def test_widgets_are_listed_in_position_order_then_by_id(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for widget_id, position in (("c", 1), ("b", 2), ("a", 1), ("z", 0)):
        assert (await create_widget(client, tenant, widget_id=widget_id, position=position)).status_code == 201

    response = await client.get(tenant.path("/widgets"), headers=tenant.headers)

    assert response.status_code == 200
    assert [w["widget_id"] for w in response.json()] == ["z", "a", "c", "b"]


async def test_an_existing_widget_id_is_a_conflict(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_widget(client, tenant, widget_id="crm")
    response = await create_widget(client, tenant, widget_id="crm")
    assert response.status_code == 409
    assert response.json() == {"detail": "widget 'crm' already exists"}


async def test_a_patch_changes_only_the_given_fields(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = (await create_widget(client, tenant, widget_id="crm", position=1)).json()

    response = await client.patch(
        tenant.path("/widgets/crm"), json={"active": False, "timeout_s": 4.0}, headers=tenant.headers
    )

    assert response.status_code == 200
    updated = response.json()
    assert (updated["active"], updated["timeout_s"]) == (False, 4.0)
    assert (updated["name"], updated["code"], updated["position"]) == ("CRM", WIDGET_CODE, 1)
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] >= created["updated_at"]


async def test_a_patch_can_change_every_field(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_widget(client, tenant, widget_id="crm")
    change = {"name": "Orders", "code": OTHER_CODE, "active": False, "position": 7, "timeout_s": 30}

    response = await client.patch(tenant.path("/widgets/crm"), json=change, headers=tenant.headers)

    assert response.status_code == 200
    assert {k: response.json()[k] for k in change} == {**change, "timeout_s": 30.0}
    reread = await client.get(tenant.path("/widgets/crm"), headers=tenant.headers)
    assert reread.json() == response.json()


async def test_a_patch_rejects_nulls_and_empty_bodies(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_widget(client, tenant, widget_id="crm")

    null = await client.patch(tenant.path("/widgets/crm"), json={"name": None}, headers=tenant.headers)
    empty = await client.patch(tenant.path("/widgets/crm"), json={}, headers=tenant.headers)

    assert null.status_code == 422
    assert null.json()["detail"].startswith("body.name: must not be null")
    assert empty.status_code == 422
    assert empty.json()["detail"] == "body: provide at least one of name, code, active, position, timeout_s"


async def test_a_deleted_widget_is_gone(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await create_widget(client, tenant, widget_id="crm")

    deleted = await client.delete(tenant.path("/widgets/crm"), headers=tenant.headers)
    again = await client.delete(tenant.path("/widgets/crm"), headers=tenant.headers)
    read = await client.get(tenant.path("/widgets/crm"), headers=tenant.headers)

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert again.status_code == 404
    assert read.status_code == 404
    assert read.json() == {"detail": "widget 'crm' not found"}


async def test_widget_fields_are_validated_with_their_location(client: httpx.AsyncClient, tenant: Tenant) -> None:
    cases: dict[str, dict[str, object]] = {
        "body.timeout_s: input should be less than or equal to 30": {"timeout_s": 31},
        "body.timeout_s: input should be greater than 0": {"timeout_s": 0},
        "body.position: expected an integer": {"position": 1.5},
        "body.active: expected a boolean": {"active": "yes"},
        "body.colour: unknown field": {"colour": "red"},
        "body.name: string should have at least 1 character": {"name": ""},
    }
    for expected, fields in cases.items():
        response = await create_widget(client, tenant, **fields)
        assert response.status_code == 422, fields
        assert response.json()["detail"] == expected


async def test_a_missing_required_field_is_named(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(tenant.path("/widgets"), json={"name": "CRM"}, headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["detail"] == "body.code: required field is missing"
