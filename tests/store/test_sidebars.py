"""Sidebars are served exactly as the orchestrator stored them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts.events import SidebarReady
from shared.ids import scoped_key
from shared.latest_sidebar import latest_update
from shared.mongo import RUN_HISTORY, RUNS, SIDEBARS, Document
from shared.run_history import history_document
from tests.store.conftest import Tenant

BASE_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def sidebar_body(tenant: Tenant, conversation_id: str, event_id: str, minutes: int) -> dict[str, Any]:
    sidebar = SidebarReady.model_validate(
        {
            "event_id": f"sidebar-{event_id}",
            "business_id": tenant.business_id,
            "conversation_id": conversation_id,
            "trigger_event_id": event_id,
            "generated_at": BASE_TIME + timedelta(minutes=minutes),
            "widgets": [
                {
                    "widget_id": "crm",
                    "name": "CRM",
                    "position": 0,
                    "status": "ok",
                    "duration_ms": 12,
                    "data": {"title": "CRM", "items": []},
                    "error": None,
                }
            ],
        }
    )
    return sidebar.model_dump(mode="json")


async def store_run(
    db: AsyncDatabase[Document], tenant: Tenant, conversation_id: str, event_id: str, minutes: int, *, done: bool
) -> dict[str, Any]:
    body = sidebar_body(tenant, conversation_id, event_id, minutes)
    created_at = BASE_TIME + timedelta(minutes=minutes)
    run_id = f"{tenant.business_id}:{event_id}"
    claim = {"_id": run_id, "business_id": tenant.business_id, "conversation_id": conversation_id}
    await db[RUNS].insert_one({**claim, "event_id": event_id, "created_at": created_at})
    if done:
        entry = history_document(
            run_id=run_id,
            event_id=event_id,
            business_id=tenant.business_id,
            conversation_id=conversation_id,
            created_at=created_at,
            published_at=created_at,
            attempt=1,
            sidebar_json=json.dumps(body),
            results=[],
        )
        await db[RUN_HISTORY].insert_one(entry)
    return body


async def test_the_latest_sidebar_is_404_before_the_first_run(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)

    response = await client.get(tenant.path("/conversations/conv-1/sidebar"), headers=tenant.headers)

    assert response.status_code == 404
    assert response.json() == {"detail": "no sidebar has been generated for conversation 'conv-1' yet"}


async def test_the_sidebar_of_an_unknown_conversation_is_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(tenant.path("/conversations/ghost/sidebar"), headers=tenant.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "conversation 'ghost' not found"}


async def test_the_latest_sidebar_is_returned_as_stored(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)
    body = sidebar_body(tenant, "conv-1", "evt-1", 0)
    await db[SIDEBARS].update_one(
        {"_id": scoped_key(tenant.business_id, "conv-1")},
        latest_update(SidebarReady.model_validate(body), json.dumps(body)),
        upsert=True,
    )

    response = await client.get(tenant.path("/conversations/conv-1/sidebar"), headers=tenant.headers)

    assert response.status_code == 200
    assert response.json() == body


async def test_the_history_lists_finished_runs_newest_first(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)
    await client.put(tenant.path("/conversations/conv-2"), json={}, headers=tenant.headers)
    oldest = await store_run(db, tenant, "conv-1", f"{tenant.business_id}-a", 1, done=True)
    newest = await store_run(db, tenant, "conv-1", f"{tenant.business_id}-b", 3, done=True)
    await store_run(db, tenant, "conv-1", f"{tenant.business_id}-c", 5, done=False)
    await store_run(db, tenant, "conv-2", f"{tenant.business_id}-d", 4, done=True)

    everything = await client.get(tenant.path("/conversations/conv-1/sidebars"), headers=tenant.headers)
    limited = await client.get(
        tenant.path("/conversations/conv-1/sidebars"), params={"limit": 1}, headers=tenant.headers
    )
    too_many = await client.get(
        tenant.path("/conversations/conv-1/sidebars"), params={"limit": 101}, headers=tenant.headers
    )

    assert everything.status_code == 200
    assert everything.json() == [newest, oldest]
    assert limited.json() == [newest]
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == "query.limit: input should be less than or equal to 100"


async def test_the_history_of_a_conversation_without_runs_is_empty(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.put(tenant.path("/conversations/conv-1"), json={}, headers=tenant.headers)

    response = await client.get(tenant.path("/conversations/conv-1/sidebars"), headers=tenant.headers)

    assert response.status_code == 200
    assert response.json() == []
