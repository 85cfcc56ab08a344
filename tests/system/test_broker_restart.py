"""Acceptance: after a RabbitMQ restart every service reconnects and the pipeline carries on."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable

import httpx

from tests.system.harness import LogLine, ServiceProcess
from tests.system.stack import Stack, business_id_of, create_business, stored_sidebar, subscribe_sidebars, upsert

WIDGET = "def get_sidebar_data(context):\n    return {'title': 'After restart', 'items': []}\n"


def _restart_rabbitmq() -> None:
    for command in ("stop_app", "start_app", "await_startup"):
        subprocess.run(["rabbitmqctl", command], check=True, capture_output=True, timeout=120)


async def _open_until_accepted(client: httpx.AsyncClient, conversation_id: str) -> httpx.Response:
    """The store answers 503 while its broker connection is re-established; a client retries."""
    for _ in range(100):
        response = await client.post(f"/conversations/{conversation_id}/open", json={})
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.2)
    raise AssertionError("the store never accepted the open after the broker restart")


async def test_services_reconnect_after_a_broker_restart(stack: Stack) -> None:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    async with await create_business(stack) as client:
        await upsert(client, f"/conversations/{conversation_id}", json={})
        widget = {"widget_id": "after", "name": "After", "code": WIDGET}
        assert (await client.post("/widgets", json=widget)).status_code == 201

        await asyncio.to_thread(_restart_rabbitmq)

        def reconnected(line: LogLine) -> bool:
            return line.get("event") == "broker.reconnected"

        for process in (stack.executor, *stack.orchestrators):
            process.wait_for(reconnected, timeout=60)
        async with subscribe_sidebars(stack, business_id_of(client)) as sidebars:
            opened = await _open_until_accepted(client, conversation_id)
            assert opened.status_code == 202, opened.text
            sidebar = await sidebars.next(within_s=60)
    assert sidebar.trigger_event_id == opened.json()["event_id"]
    assert [w.status for w in sidebar.widgets] == ["ok"]


# Long enough that the broker stops (rabbitmqctl itself takes a while to start) mid-run.
SLOW = "import time\n\ndef get_sidebar_data(context):\n    time.sleep(5)\n    return {'title': 'Slow', 'items': []}\n"


async def test_a_run_in_flight_during_a_broker_restart_still_gets_its_sidebar(stack: Stack) -> None:
    """The restart takes the event's delivery from its owner: the owner abandons the run, and
    whichever replica the event is redelivered to takes it over and runs the widget again."""
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    async with await create_business(stack) as client:
        await upsert(client, f"/conversations/{conversation_id}", json={})
        widget = {"widget_id": "slow", "name": "Slow", "code": SLOW, "timeout_s": 20}
        assert (await client.post("/widgets", json=widget)).status_code == 201
        opened = await _open_until_accepted(client, conversation_id)
        event_id = opened.json()["event_id"]

        def started(line: LogLine) -> bool:
            return line.get("event") == "run.started" and line.get("event_id") == event_id

        owner = await asyncio.wait_for(_first_logging(stack, started), 30)
        await asyncio.to_thread(_restart_rabbitmq)
        # Read back through the API: a live subscriber may miss a sidebar published while its
        # own connection was still coming back.
        stored = await stored_sidebar(client, conversation_id, event_id, within_s=90)

    assert [w["status"] for w in stored.json()["widgets"]] == ["ok"], stored.text
    takeovers = [
        line
        for process in stack.orchestrators
        for line in process.lines
        if line.get("event") == "run.taken_over" and line.get("event_id") == event_id
    ]
    given_up = [
        line
        for line in owner.lines
        if line.get("event") == "message.handled"
        and line.get("event_id") == event_id
        and "RunAbandoned" in str(line.get("error"))
    ]
    assert given_up, "the owner gave the run up when its delivery was lost"
    assert takeovers, "a replica took the run over from the redelivered event"


async def _first_logging(stack: Stack, predicate: Callable[[LogLine], bool]) -> ServiceProcess:
    """The orchestrator that logs a line matching ``predicate`` first."""
    while True:
        for process in stack.orchestrators:
            if any(predicate(line) for line in process.lines):
                return process
        await asyncio.sleep(0.05)  # log lines arrive on the processes' reader threads
