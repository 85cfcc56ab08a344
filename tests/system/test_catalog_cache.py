"""Acceptance: orchestrators cache each business's widgets, yet an edited widget's new
code runs on the very next conversation opened: the store's catalog.changed notice
drops the cached entry on every replica."""

from __future__ import annotations

import asyncio
import uuid

from tests.system.stack import Stack, business_id_of, create_business, subscribe_sidebars, upsert


def _code(version: str) -> str:
    return f"def get_sidebar_data(context):\n    return {{'title': {version!r}, 'items': []}}\n"


async def test_an_edited_widget_runs_its_new_code_on_the_next_open(stack: Stack) -> None:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        created = await client.post("/widgets", json={"widget_id": "v", "name": "Versioned", "code": _code("v1")})
        assert created.status_code == 201
        async with subscribe_sidebars(stack, business_id) as sidebars:
            titles = []
            # Several opens per version, so both replicas have the business cached before each edit.
            for version in ("v1", "v2", "v3"):
                if version != "v1":
                    edited = await client.patch("/widgets/v", json={"code": _code(version)})
                    assert edited.status_code == 200, edited.text
                for _ in range(3):
                    assert (await client.post(f"/conversations/{conversation_id}/open", json={})).status_code == 202
                    sidebar = await sidebars.next()
                    titles.append(sidebar.widgets[0].data.title)
            deactivated = await client.patch("/widgets/v", json={"active": False})
            assert deactivated.status_code == 200
            assert (await client.post(f"/conversations/{conversation_id}/open", json={})).status_code == 202
            after = await sidebars.next()
    assert titles == ["v1"] * 3 + ["v2"] * 3 + ["v3"] * 3
    assert after.widgets == [], "a deactivated widget leaves the cache too"
    for process in stack.orchestrators:
        # The create, two edits and the deactivation: every replica heard of each.
        notices = await asyncio.to_thread(
            process.wait_for,
            lambda line: line.get("event") == "catalog.invalidated" and line.get("business_id") == business_id,
            30,
            4,
        )
        assert [line["what"] for line in notices] == ["widgets"] * 4


async def test_a_secret_set_after_caching_reaches_the_next_run(stack: Stack) -> None:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    code = (
        "def get_sidebar_data(context):\n"
        "    try:\n"
        "        value = secret('TOKEN')\n"
        "    except Exception as exc:\n"
        "        value = type(exc).__name__\n"
        "    return {'title': str(len(value)) if value.startswith('tok') else value, 'items': []}\n"
    )
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        assert (await client.post("/widgets", json={"widget_id": "s", "name": "S", "code": code})).status_code == 201
        async with subscribe_sidebars(stack, business_id) as sidebars:
            assert (await client.post(f"/conversations/{conversation_id}/open", json={})).status_code == 202
            before = await sidebars.next()
            assert (await client.put("/secrets/TOKEN", json={"value": "tok-123456"})).status_code == 204
            assert (await client.post(f"/conversations/{conversation_id}/open", json={})).status_code == 202
            after = await asyncio.wait_for(sidebars.next(), 30)
    assert before.widgets[0].data.title != "10"
    assert after.widgets[0].data.title == "10"
