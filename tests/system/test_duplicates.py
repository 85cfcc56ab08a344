"""Acceptance: one conversation.opened delivered three times, with two orchestrators
running, yields exactly one stored sidebar and one sidebar.ready."""

from __future__ import annotations

import json
import uuid

from pymongo import MongoClient

from shared.latest_sidebar import latest_body
from tests.system.harness import LogLine
from tests.system.stack import (
    Stack,
    business_id_of,
    create_business,
    opened_event,
    publish_raw_event,
    publish_sentinel_sidebar,
    subscribe_sidebars,
    upsert,
)

WIDGET = (
    "def get_sidebar_data(context):\n"
    "    return {'title': 'Echo', 'items': [{'title': context['conversation']['id'], 'sections': []}]}\n"
)


def _handled_count(stack: Stack, consumer: str, event_id: str) -> int:
    return sum(
        1
        for process in stack.orchestrators
        for line in process.lines
        if line.get("event") == "message.handled"
        and line.get("consumer") == consumer
        and line.get("event_id") == event_id
    )


async def test_triple_delivery_gives_exactly_one_sidebar(stack: Stack) -> None:
    assert len(stack.orchestrators) == 2
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    event_id = uuid.uuid4().hex
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        for n in range(3):
            widget = {"widget_id": f"echo{n}", "name": f"Echo {n}", "code": WIDGET, "position": n}
            assert (await client.post("/widgets", json=widget)).status_code == 201
        async with subscribe_sidebars(stack, business_id) as sidebars:
            body = opened_event(business_id, conversation_id, event_id)
            for _ in range(3):
                await publish_raw_event(stack, body)
            sidebar = await sidebars.next()

            def all_handled(_: LogLine) -> bool:
                return (
                    _handled_count(stack, "conversation_opened", event_id) >= 3
                    and _handled_count(stack, "widget_results", event_id) >= 3
                )

            stack.orchestrators[0].wait_for(all_handled, timeout=30)
            # Anything published before this point is queued before the sentinel.
            await publish_sentinel_sidebar(stack, business_id)
            after = await sidebars.next()
        assert after.trigger_event_id == "sentinel", f"a second sidebar.ready arrived: {after}"

    assert sidebar.trigger_event_id == event_id
    assert [w.status for w in sidebar.widgets] == ["ok", "ok", "ok"]
    with MongoClient(stack.infra.mongodb_url) as mongo:
        db = mongo[stack.infra.mongodb_database]
        assert db.runs.count_documents({"business_id": business_id}) == 1
        stored = list(db.sidebars.find({"business_id": business_id}))
    assert len(stored) == 1
    assert json.loads(latest_body(stored[0]))["trigger_event_id"] == event_id
    published = [
        line
        for process in stack.orchestrators
        for line in process.lines
        if line.get("event") == "sidebar.published" and line.get("event_id") == event_id
    ]
    assert len(published) == 1
