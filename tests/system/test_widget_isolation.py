"""Acceptance: widget code cannot read service credentials by any route, and the
dashboard's test run returns data, logs and duration, or a precise validation error."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.system.stack import Stack, create_business, upsert

# Tries every route to the services' credentials and reports everything it could read.
SNOOP = r"""
import os

def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 20).decode("latin-1")
    except Exception as exc:
        return "ERR " + type(exc).__name__

def get_sidebar_data(context):
    found = {"os.environ": repr(dict(os.environ)), "uid": str(os.getuid())}
    found["/proc/self/environ"] = _read("/proc/self/environ")
    found["parent environ"] = _read(f"/proc/{os.getppid()}/environ")
    found["parent cmdline"] = _read(f"/proc/{os.getppid()}/cmdline")
    found["parent mem"] = _read(f"/proc/{os.getppid()}/mem")
    found["/proc/1/environ"] = _read("/proc/1/environ")
    scanned = 0
    try:
        pids = list(filter(str.isdigit, os.listdir("/proc")))
    except OSError as exc:
        pids, found["listing /proc"] = [], "ERR " + type(exc).__name__
    for pid in pids:
        scanned += 1
        for name in ("environ", "cmdline"):
            text = _read(f"/proc/{pid}/{name}")
            if text and not text.startswith("ERR"):
                found[f"{pid} {name}"] = text
    found["scanned"] = str(scanned)
    fields = {key: value[:2000] for key, value in found.items()}
    return {"title": "Snoop", "items": [{"title": "found", "sections": [{"title": "all", "fields": fields}]}]}
"""

GOOD = (
    "def get_sidebar_data(context):\n"
    "    print('looking up', context['customer']['email'])\n"
    "    return {'title': 'CRM', 'items': [{'title': context['customer']['name'], 'sections': []}]}\n"
)
BROKEN = (
    "def get_sidebar_data(context):\n"
    "    return {'title': 'CRM', 'items': [{'title': 'x', 'sections': [{'title': 'a', 'fields': {}}, "
    "{'title': 'b', 'fields': 'oops'}]}]}\n"
)


async def _seed_conversation(client: httpx.AsyncClient) -> str:
    conversation_id = f"conv-{uuid.uuid4().hex[:8]}"
    customer = {"email": "jane@example.com", "name": "Jane Cooper"}
    await upsert(client, "/customers/cus-1", json=customer)
    body = {"public_id": f"pub-{conversation_id}", "customer_id": "cus-1"}
    await upsert(client, f"/conversations/{conversation_id}", json=body)
    return conversation_id


async def test_widget_code_cannot_read_service_credentials(stack: Stack) -> None:
    async with await create_business(stack) as client:
        conversation_id = await _seed_conversation(client)
        created = await client.post("/widgets", json={"widget_id": "snoop", "name": "Snoop", "code": SNOOP})
        assert created.status_code == 201, created.text
        response = await client.post("/widgets/snoop/test", json={"conversation_id": conversation_id})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "ok", result["error"]
    fields = result["data"]["items"][0]["sections"][0]["fields"]
    assert fields["/proc/self/environ"] in ("", "ERR PermissionError"), "empty, or closed to the widget itself"
    assert fields["os.environ"] in ("{}", "{'LC_CTYPE': 'C.UTF-8'}"), "only Python's own locale coercion"
    assert fields["parent environ"].startswith("ERR")
    assert fields["parent mem"].startswith("ERR")
    if "listing /proc" in fields:
        assert fields["listing /proc"] == "ERR PermissionError", "Landlock closes /proc entirely"
    else:
        assert int(fields["scanned"]) > 5, "the scan ran over /proc"
    everything = json.dumps(result)
    for canary in stack.canaries:
        assert canary not in everything, f"widget code read a credential ({canary})"
    assert "amqp://" not in everything
    assert "mongodb://" not in everything


async def test_test_run_returns_data_logs_and_duration(stack: Stack) -> None:
    async with await create_business(stack) as client:
        conversation_id = await _seed_conversation(client)
        assert (
            await client.post("/widgets", json={"widget_id": "crm", "name": "CRM", "code": GOOD})
        ).status_code == 201
        by_id = await client.post("/widgets/crm/test", json={"conversation_id": conversation_id})
        by_public_id = await client.post("/widgets/crm/test", json={"public_id": f"pub-{conversation_id}"})
    for response in (by_id, by_public_id):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["status"] == "ok"
        assert result["error"] is None
        assert result["data"]["items"][0]["title"] == "Jane Cooper"
        assert result["logs"] == "looking up jane@example.com\n"
        assert result["duration_ms"] > 0


async def test_test_run_reports_a_precise_validation_error(stack: Stack) -> None:
    async with await create_business(stack) as client:
        conversation_id = await _seed_conversation(client)
        assert (
            await client.post("/widgets", json={"widget_id": "crm", "name": "CRM", "code": BROKEN})
        ).status_code == 201
        response = await client.post("/widgets/crm/test", json={"conversation_id": conversation_id})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "error"
    assert result["error"]["type"] == "invalid_return"
    assert result["error"]["message"].endswith("items[0].sections[1].fields: expected a mapping")
    assert result["data"] is None
