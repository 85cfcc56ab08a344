"""Acceptance: after a RabbitMQ restart every service reconnects and the pipeline carries on."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import httpx

from tests.system.harness import LogLine
from tests.system.stack import Stack, business_id_of, create_business, subscribe_sidebars, upsert

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
