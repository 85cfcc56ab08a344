"""Acceptance: kill -9 an orchestrator while it owns runs, and every event still gets its
sidebar: RabbitMQ redelivers the events it held, and the other replica takes their runs
over and runs their widgets again. A second sidebar for one event is allowed only inside
the documented crash window: the killed replica published it but had not yet recorded it."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.infra import Infra
from tests.system.stack import (
    Stack,
    business_id_of,
    create_business,
    opened_event,
    publish_raw_event,
    start_stack,
    subscribe_sidebars,
    upsert,
)

EVENTS = 8
# Slow enough that the victim owns several runs when it dies, far inside the deadline.
WIDGET = "import time\n\ndef get_sidebar_data(context):\n    time.sleep(2)\n    return {'title': 'Slow', 'items': []}\n"


@pytest.fixture(scope="module")
def stack(infra: Infra) -> Iterator[Stack]:
    value = start_stack(infra, orchestrators=2)
    yield value
    value.stop()


async def test_killing_an_orchestrator_mid_load_loses_no_sidebar(stack: Stack) -> None:
    victim, survivor = stack.orchestrators
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    event_ids = [uuid.uuid4().hex for _ in range(EVENTS)]
    async with await create_business(stack) as client:
        business_id = business_id_of(client)
        await upsert(client, f"/conversations/{conversation_id}", json={})
        # A long timeout: the one executor (4 slots) also runs the jobs of the runs taken over.
        body = {"widget_id": "slow", "name": "Slow", "code": WIDGET, "timeout_s": 25}
        assert (await client.post("/widgets", json=body)).status_code == 201
        async with subscribe_sidebars(stack, business_id) as sidebars:
            for event_id in event_ids:
                await publish_raw_event(stack, opened_event(business_id, conversation_id, event_id))

            def owns_runs(line: dict[str, object]) -> bool:
                return line.get("event") == "run.started" and line.get("event_id") in event_ids

            await asyncio.to_thread(victim.wait_for, owns_runs, 30, 2)
            await asyncio.to_thread(victim.stop, signal.SIGKILL)
            taken = {str(line["event_id"]) for line in victim.lines if owns_runs(line)}
            arrived: Counter[str] = Counter()
            while set(arrived) != set(event_ids):
                sidebar = await sidebars.next(within_s=60)
                arrived[sidebar.trigger_event_id] += 1
                assert all(w.status == "ok" for w in sidebar.widgets), sidebar

    taken_over = {str(line["event_id"]) for line in survivor.lines if line.get("event") == "run.taken_over"}
    published_by_victim = {str(line["event_id"]) for line in victim.lines if line.get("event") == "sidebar.published"}
    assert taken - published_by_victim, "the victim died owning runs it had not published"
    assert taken - published_by_victim <= taken_over, "every run the victim left unpublished was taken over"
    doubled = {event_id for event_id, count in arrived.items() if count > 1}
    assert doubled <= published_by_victim, f"second sidebars outside the crash window: {doubled}"
