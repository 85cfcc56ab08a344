"""Each widget's card is published as soon as its result is recorded, so a slow
widget never holds up the others; sidebar.ready follows with the whole sidebar."""

from __future__ import annotations

import asyncio
import json
import uuid

from shared.contracts.events import decode_sidebar_ready, decode_sidebar_widget_ready
from tests.system.stack import Stack, business_id_of, create_business, stored_sidebar, subscribe_raw, upsert

FAST = "def get_sidebar_data(context):\n    return {'title': 'Fast', 'items': []}\n"
SLOW = "import time\n\ndef get_sidebar_data(context):\n    time.sleep(1.5)\n    return {'title': 'Slow', 'items': []}\n"


async def test_fast_cards_arrive_before_a_slow_widget_finishes(stack: Stack) -> None:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        widgets = [("slow", SLOW, 1), ("fast1", FAST, 2), ("fast2", FAST, 3)]
        for widget_id, code, position in widgets:
            body = {"widget_id": widget_id, "name": widget_id, "code": code, "position": position}
            assert (await client.post("/widgets", json=body)).status_code == 201
        patterns = (f"sidebar.widget.{business_id}.*", f"sidebar.ready.{business_id}.*")
        async with subscribe_raw(stack, *patterns) as received:
            opened = await client.post(f"/conversations/{conversation_id}/open", json={})
            assert opened.status_code == 202
            arrivals = [await asyncio.wait_for(received.get(), 30) for _ in range(4)]

    keys = [key for key, _ in arrivals]
    assert keys[:3] == [f"sidebar.widget.{business_id}.{conversation_id}"] * 3
    assert keys[3] == f"sidebar.ready.{business_id}.{conversation_id}"
    cards = [decode_sidebar_widget_ready(_json(body)) for _, body in arrivals[:3]]
    assert [card.widget.widget_id for card in cards][-1] == "slow", "the slow widget's card comes last"
    assert {card.widget.widget_id for card in cards[:2]} == {"fast1", "fast2"}
    assert all(card.trigger_event_id == opened.json()["event_id"] for card in cards)
    assert all(card.widget.status == "ok" for card in cards)
    sidebar = decode_sidebar_ready(_json(arrivals[3][1]))
    assert [w.widget_id for w in sidebar.widgets] == ["slow", "fast1", "fast2"]
    assert {c.widget.widget_id: c.widget for c in cards} == {w.widget_id: w for w in sidebar.widgets}


def _json(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


async def test_field_names_with_dots_and_dollars_are_stored_and_served(stack: Stack) -> None:
    """Field names are free text in the return format; the database must not see them as keys."""
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    code = (
        "def get_sidebar_data(context):\n"
        "    fields = {'Avg. order value': '$42', '$price': 1, 'a.b.c': None}\n"
        "    return {'title': 'Orders', 'items': [{'title': 'x', 'sections': [{'title': 's', 'fields': fields}]}]}\n"
    )
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        assert (
            await client.post("/widgets", json={"widget_id": "orders", "name": "Orders", "code": code})
        ).status_code == 201
        async with subscribe_raw(stack, f"sidebar.ready.{business_id}.*") as received:
            assert (await client.post(f"/conversations/{conversation_id}/open", json={})).status_code == 202
            _, body = await asyncio.wait_for(received.get(), 30)
        stored = await stored_sidebar(client, conversation_id, decode_sidebar_ready(_json(body)).trigger_event_id)
        history = await client.get(f"/conversations/{conversation_id}/sidebars")
    sidebar = decode_sidebar_ready(_json(body))
    assert sidebar.widgets[0].status == "ok", sidebar.widgets[0].error
    fields = sidebar.widgets[0].data.items[0].sections[0].fields
    assert fields == {"Avg. order value": "$42", "$price": 1, "a.b.c": None}
    assert stored.status_code == 200
    assert stored.json() == sidebar.model_dump(mode="json")
    assert history.json() == [sidebar.model_dump(mode="json")]
