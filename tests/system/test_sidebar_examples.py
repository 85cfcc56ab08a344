"""Acceptance: the docs' four examples produce their cards beside three bad widgets,
each of which gets its own status within the sidebar deadline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from demo.examples import EXAMPLES, expected_sidebar_data, load_example
from demo.mock_api import JANE
from tests.system.stack import Stack, business_id_of, create_business, stored_sidebar, subscribe_sidebars, upsert

RAISES = "def get_sidebar_data(context):\n    customer = context['customer']\n    raise RuntimeError('CRM is down')\n"
INVALID = (
    "def get_sidebar_data(context):\n"
    "    return {'title': 'Broken', 'items': [{'title': 'x', 'sections': [{'title': 's', 'fields': ['a']}]}]}\n"
)
SLEEPS = "import time\n\ndef get_sidebar_data(context):\n    time.sleep(60)\n"
BAD_WIDGET_TIMEOUT_S = 2.0


async def _seed(client: httpx.AsyncClient, stack: Stack, conversation_id: str) -> None:
    await upsert(client, "/customers/cus-jane", json={"email": JANE, "name": "Jane Cooper"})
    conversation = {"public_id": f"p-{conversation_id}", "customer_id": "cus-jane", "channel": "email"}
    await upsert(client, f"/conversations/{conversation_id}", json=conversation)
    for example in EXAMPLES:
        widget = {
            "widget_id": example.widget_id,
            "name": example.name,
            "code": load_example(example.widget_id, stack.mock_api_url),
            "position": example.position,
        }
        response = await client.post("/widgets", json=widget)
        assert response.status_code == 201, response.text
    bad = [("raises", RAISES, 15), ("invalid", INVALID, 25), ("sleeps", SLEEPS, 35)]
    for widget_id, code, position in bad:
        widget = {"widget_id": widget_id, "name": widget_id.title(), "code": code, "position": position}
        response = await client.post("/widgets", json={**widget, "timeout_s": BAD_WIDGET_TIMEOUT_S})
        assert response.status_code == 201, response.text
    inactive = {"widget_id": "inactive", "name": "Off", "code": RAISES, "position": 1, "active": False}
    assert (await client.post("/widgets", json=inactive)).status_code == 201


async def test_examples_render_and_bad_widgets_fail_alone(stack: Stack) -> None:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    async with await create_business(stack) as client:
        await _seed(client, stack, conversation_id)
        async with subscribe_sidebars(stack, business_id_of(client)) as sidebars:
            clicked_at = datetime.now(UTC)
            opened = await client.post(f"/conversations/{conversation_id}/open", json={})
            assert opened.status_code == 202, opened.text
            sidebar = await sidebars.next(within_s=40)
        stored = await stored_sidebar(client, conversation_id, sidebar.trigger_event_id)

    assert sidebar.trigger_event_id == opened.json()["event_id"]
    assert [w.widget_id for w in sidebar.widgets] == [
        "crm", "raises", "wholesale", "invalid", "warranties", "sleeps", "subscriptions",
    ]  # fmt: skip
    by_id = {w.widget_id: w for w in sidebar.widgets}
    expected = expected_sidebar_data(JANE)
    for example in EXAMPLES:
        entry = by_id[example.widget_id]
        assert entry.status == "ok", entry.error
        assert entry.error is None
        assert entry.data.model_dump(mode="json") == expected[example.widget_id]
        assert entry.data.items, f"{example.name} shows cards for the demo customer"

    assert by_id["raises"].status == "error"
    assert by_id["raises"].error is not None
    assert by_id["raises"].error.type == "exception"
    assert by_id["raises"].error.message == "RuntimeError: CRM is down (line 3)"
    assert by_id["invalid"].status == "error"
    assert by_id["invalid"].error is not None
    assert by_id["invalid"].error.type == "invalid_return"
    assert "items[0].sections[0].fields: expected a mapping" in by_id["invalid"].error.message
    assert by_id["sleeps"].status == "timeout"
    for widget_id in ("raises", "invalid", "sleeps"):
        assert by_id[widget_id].data.model_dump() == {"title": widget_id.title(), "items": []}

    deadline_s = 10 + 2  # the largest example timeout plus the configured margin
    assert (sidebar.generated_at - clicked_at).total_seconds() < deadline_s

    assert stored.status_code == 200
    assert stored.json() == sidebar.model_dump(mode="json")
