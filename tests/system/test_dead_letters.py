"""Acceptance: malformed events land in the dead-letter queue with a reason, and the
next valid event still gets its sidebar."""

from __future__ import annotations

import json
import uuid

import aio_pika

from shared.topology import DEAD_LETTER_QUEUE
from tests.system.stack import (
    Stack,
    business_id_of,
    create_business,
    opened_event,
    publish_raw_event,
    subscribe_sidebars,
    upsert,
)

WIDGET = "def get_sidebar_data(context):\n    return {'title': 'Hello', 'items': []}\n"


async def _dead_letters(stack: Stack, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect_robust(stack.infra.rabbitmq_url)
    received = []
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(DEAD_LETTER_QUEUE)
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                received.append(message)
                if len(received) == count:
                    break
    finally:
        await connection.close()
    return received


async def test_malformed_events_are_dead_lettered_and_the_pipeline_carries_on(stack: Stack) -> None:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        widget = {"widget_id": "hello", "name": "Hello", "code": WIDGET}
        assert (await client.post("/widgets", json=widget)).status_code == 201

        not_json = b"{this is not json"
        bad_id = json.dumps({**json.loads(opened_event(business_id, conversation_id)), "business_id": "no spaces!"})
        unknown_conversation = opened_event(business_id, "no-such-conversation")
        for body in (not_json, bad_id.encode(), unknown_conversation):
            await publish_raw_event(stack, body)

        dead = await _dead_letters(stack, 3)
        by_body = {message.body: message for message in dead}
        assert by_body[not_json].headers["x-error-kind"] == "contract"
        assert "invalid JSON" in str(by_body[not_json].headers["x-error"])
        assert by_body[bad_id.encode()].headers["x-error-kind"] == "contract"
        assert "business_id: string should match pattern" in str(by_body[bad_id.encode()].headers["x-error"])
        assert by_body[unknown_conversation].headers["x-error-kind"] == "permanent"
        assert "unknown" in str(by_body[unknown_conversation].headers["x-error"])
        for message in dead:
            assert message.headers["x-original-routing-key"] == "conversation.opened"

        async with subscribe_sidebars(stack, business_id) as sidebars:
            good = opened_event(business_id, conversation_id)
            await publish_raw_event(stack, good)
            sidebar = await sidebars.next()
        assert sidebar.trigger_event_id == json.loads(good)["event_id"]
        assert [w.status for w in sidebar.widgets] == ["ok"]

    dead_lines = [
        line
        for process in stack.orchestrators
        for line in process.lines
        if line.get("event") == "message.handled" and line.get("outcome") == "dead_lettered"
    ]
    assert len(dead_lines) >= 3
    assert all(line["level"] == "warning" and line["error"] for line in dead_lines)
