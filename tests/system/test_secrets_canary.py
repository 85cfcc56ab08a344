"""Acceptance: a canary secret set through the store API reaches its own business's widget,
and nothing else: not the logs, results, API responses or queued messages, nor the memory
of another business's widget running at the same time."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from shared.mongo import connect_mongo
from shared.secrets import SecretBox, parse_key
from shared.topology import EXCHANGE, INTERNAL_EXCHANGE, WIDGET_JOB_KEY
from tests.system.stack import Stack, business_id_of, create_business, stored_sidebar, upsert

HOLD_S = 6.0  # how long A's widget keeps the canary in memory; B scans inside that window
SCAN_DELAY_S = 1.0

# Business A proves it read the secret by returning its digest, never the secret itself.
OWNER = f"""
import hashlib
import time

def get_sidebar_data(context):
    held_from = time.time()
    digest = hashlib.sha256(secret("CANARY").encode()).hexdigest()
    log("read the CANARY secret")
    if context["conversation"]["subject"] == "hold":
        time.sleep({HOLD_S})
    fields = {{"held_from": held_from, "held_until": time.time()}}
    return {{"title": "Owner", "items": [{{"title": digest, "sections": [{{"title": "held", "fields": fields}}]}}]}}
"""

# Business B walks every object reachable from the collector and the modules, looking
# for A's canary and, as a control that the walk reaches secrets at all, its own secret.
# Each needle is spelt in two halves, so neither secret appears whole in this code.
SCANNER = """
import gc
import sys
import time
import types

NEEDLES = [({a_head!r}, {a_tail!r}), ({b_head!r}, {b_tail!r})]

def _scan(needles):
    raw = [needle.encode() for needle in needles]
    skip = {{id(value) for value in (*needles, *raw)}}
    hits = [0] * len(needles)
    where = []
    gc.unfreeze()  # the zygote's frozen objects too
    todo = gc.get_objects()
    todo.extend(vars(module) for module in list(sys.modules.values()) if hasattr(module, "__dict__"))
    seen = set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in skip:
            continue
        seen.add(id(obj))
        if isinstance(obj, (str, bytes, bytearray)):
            for n, needle in enumerate(needles if isinstance(obj, str) else raw):
                if needle in obj:
                    hits[n] += 1
                    where.append(f"{{n}}:{{type(obj).__name__}}:{{len(obj)}}")
            continue
        todo.extend(gc.get_referents(obj))
        if isinstance(obj, types.CodeType):
            todo.extend(obj.co_consts)
    return hits, len(seen), where

def get_sidebar_data(context):
    time.sleep({scan_delay})
    started = time.time()
    needles = [head + tail for head, tail in NEEDLES]
    hits, scanned, where = _scan(needles)
    fields = {{
        "canary_hits": hits[0],
        "own_secret_hits": hits[1],
        "objects": scanned,
        "where": "; ".join(where)[:500],
        "started": started,
        "finished": time.time(),
    }}
    return {{"title": "Scanner", "items": [{{"title": "memory", "sections": [{{"title": "scan", "fields": fields}}]}}]}}
"""


@dataclass(frozen=True)
class Captured:
    exchange: str
    routing_key: str
    body: bytes


def reply_queues(stack: Stack) -> tuple[set[str], str]:
    """Where executors send results: each orchestrator's results queue, and the store's test-run replies."""
    orchestrators = {line["results_queue"] for p in stack.orchestrators for line in p.lines if "results_queue" in line}
    store = [line["reply_queue"] for line in stack.store.lines if line.get("event") == "test_runs.ready"]
    assert len(orchestrators) == len(stack.orchestrators) and len(store) == 1, (orchestrators, store)
    return orchestrators, store[0]


@asynccontextmanager
async def capture_messages(stack: Stack) -> AsyncIterator[asyncio.Queue[Captured]]:
    """Copies of every job and result on the internal exchange and every message on the external one."""
    received: asyncio.Queue[Captured] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await received.put(Captured(message.exchange or "", message.routing_key or "", message.body))

    connection = await aio_pika.connect_robust(stack.infra.rabbitmq_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        internal = await channel.get_exchange(INTERNAL_EXCHANGE)
        orchestrators, store = reply_queues(stack)
        for key in (WIDGET_JOB_KEY, store, *orchestrators):
            await queue.bind(internal, key)
        await queue.bind(await channel.get_exchange(EXCHANGE), "#")
        await queue.consume(on_message, no_ack=True)
        yield received
    finally:
        await connection.close()


async def sidebars_of(received: asyncio.Queue[Captured], keys: set[str], seen: list[Captured]) -> dict[str, Captured]:
    """Wait for a sidebar.ready on each routing key; everything received meanwhile lands in ``seen``."""
    ready: dict[str, Captured] = {}
    while set(ready) != keys:
        message = await asyncio.wait_for(received.get(), 40)
        seen.append(message)
        if message.routing_key in keys:
            ready[message.routing_key] = message
    return ready


async def run_test_job(
    received: asyncio.Queue[Captured], business_id: str, reply_queue: str, seen: list[Captured]
) -> None:
    """Wait for the copies of ``business_id``'s Run Test job and of its result."""
    job_seen = result_seen = False
    while not (job_seen and result_seen):
        message = await asyncio.wait_for(received.get(), 40)
        seen.append(message)
        if message.routing_key == WIDGET_JOB_KEY:
            job = json.loads(message.body)
            job_seen = job_seen or (job["business_id"], job["purpose"]) == (business_id, "test")
        result_seen = result_seen or message.routing_key == reply_queue


def only_widget(sidebar_ready: bytes) -> dict[str, Any]:
    """The one widget of a sidebar.ready body; it must have succeeded."""
    [widget] = json.loads(sidebar_ready)["widgets"]
    assert widget["status"] == "ok", widget["error"]
    return cast(dict[str, Any], widget)


def fields_of(widget: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], widget["data"]["items"][0]["sections"][0]["fields"])


async def test_a_canary_secret_reaches_only_its_own_widget(stack: Stack) -> None:
    canary = f"canary-{uuid.uuid4()}"
    control = f"control-{uuid.uuid4()}"
    digest = hashlib.sha256(canary.encode()).hexdigest()
    scanner = SCANNER.format(
        a_head=canary[:20], a_tail=canary[20:], b_head=control[:20], b_tail=control[20:], scan_delay=SCAN_DELAY_S
    )
    responses: list[httpx.Response] = []
    seen: list[Captured] = []

    async with await create_business(stack) as owner, await create_business(stack) as other:
        a, b = business_id_of(owner), business_id_of(other)
        responses.append(await owner.put("/secrets/CANARY", json={"value": canary}))
        responses.append(await other.put("/secrets/CONTROL", json={"value": control}))
        assert [(r.status_code, r.content) for r in responses] == [(204, b"")] * 2
        responses.append(await owner.post("/widgets", json={"widget_id": "owner", "name": "Owner", "code": OWNER}))
        responses.append(await other.post("/widgets", json={"widget_id": "scan", "name": "Scan", "code": scanner}))
        assert [r.status_code for r in responses[2:]] == [201, 201], [r.text for r in responses[2:]]
        await upsert(owner, "/conversations/conv-hold", json={"subject": "hold"})
        await upsert(owner, "/conversations/conv-test", json={"subject": "test"})
        await upsert(other, "/conversations/conv-scan", json={"subject": "scan"})

        async with capture_messages(stack) as received:
            opened = await asyncio.gather(
                owner.post("/conversations/conv-hold/open", json={}),
                other.post("/conversations/conv-scan/open", json={}),
            )
            assert [r.status_code for r in opened] == [202, 202]
            keys = {f"sidebar.ready.{a}.conv-hold", f"sidebar.ready.{b}.conv-scan"}
            ready = await sidebars_of(received, keys, seen)
            test_run = await owner.post("/widgets/owner/test", json={"conversation_id": "conv-test"})
            await run_test_job(received, a, reply_queues(stack)[1], seen)

        owner_secrets, other_secrets = await owner.get("/secrets"), await other.get("/secrets")
        responses += [test_run, owner_secrets, other_secrets]
        hold, scan = (
            json.loads(ready[f"sidebar.ready.{x}"].body)["trigger_event_id"]
            for x in (f"{a}.conv-hold", f"{b}.conv-scan")
        )
        responses += [await owner.get("/widgets/owner"), await stored_sidebar(owner, "conv-hold", hold)]
        responses += [await other.get("/widgets/scan"), await stored_sidebar(other, "conv-scan", scan)]

    # Results: A's widget read the canary (its digest matches) and returned no secret.
    owner_widget = only_widget(ready[f"sidebar.ready.{a}.conv-hold"].body)
    assert owner_widget["data"]["items"][0]["title"] == digest
    assert test_run.status_code == 200, test_run.text
    assert test_run.json()["status"] == "ok", test_run.json()["error"]
    assert test_run.json()["data"]["items"][0]["title"] == digest, "Run Test sees the same secrets as a live run"
    assert test_run.json()["logs"] == "read the CANARY secret\n"

    # Memory: B's widget scanned while A's held the canary, found its own secret, and not A's.
    scan = fields_of(only_widget(ready[f"sidebar.ready.{b}.conv-scan"].body))
    held = fields_of(owner_widget)
    assert held["held_from"] < scan["started"] < scan["finished"] < held["held_until"], (held, scan)
    assert scan["own_secret_hits"] >= 1, f"the scan must reach where a widget's secrets live: {scan}"
    assert scan["objects"] > 10_000, scan
    assert scan["canary_hits"] == 0, f"another business's widget found the canary: {scan['where']}"

    # Queued messages: every job carries the secrets of its own business, sealed.
    box = SecretBox(parse_key(stack.env["SECRETS_KEY"]))
    jobs = [json.loads(m.body) for m in seen if m.exchange == INTERNAL_EXCHANGE and m.routing_key == WIDGET_JOB_KEY]
    owner_jobs = [job for job in jobs if job["business_id"] == a]
    assert sorted(job["purpose"] for job in owner_jobs) == ["sidebar", "test"]
    for job in owner_jobs:
        assert set(job["secrets"]) == {"CANARY"}
        assert box.open(a, "CANARY", job["secrets"]["CANARY"]) == canary
    assert [set(job["secrets"]) for job in jobs if job["business_id"] == b] == [{"CONTROL"}]
    orchestrators, store = reply_queues(stack)
    keys = {m.routing_key for m in seen}
    assert keys >= {WIDGET_JOB_KEY, store, "conversation.opened"} and keys & orchestrators, keys
    for message in seen:
        assert canary.encode() not in message.body, f"{message.exchange} {message.routing_key} carries the canary"
        assert control.encode() not in message.body, f"{message.exchange} {message.routing_key} carries a secret"

    # API responses: the secrets list shows names only; nothing returns a value.
    assert [set(entry) for entry in owner_secrets.json()] == [{"name", "updated_at"}]
    assert [entry["name"] for entry in owner_secrets.json()] == ["CANARY"]
    assert [entry["name"] for entry in other_secrets.json()] == ["CONTROL"]
    for response in responses:
        assert response.status_code in (200, 201, 204), response.text
        assert canary not in response.text
        assert control not in response.text

    # At rest: MongoDB holds only sealed values.
    mongo = connect_mongo(stack.mongodb_url, app_name="canary-test")
    try:
        db = mongo[stack.infra.mongodb_database]
        for name in await db.list_collection_names():
            for doc in await db[name].find().to_list():
                assert canary not in repr(doc), f"collection {name} holds the canary"
    finally:
        await mongo.close()

    # Logs: every line every service printed during the test, once the executor has finished all three jobs.
    stack.executor.wait_for(
        lambda line: line.get("event") == "widget.finished" and line.get("business_id") in (a, b), count=3
    )
    for process in stack.all():
        assert process.raw, f"{process.name} printed nothing; the log check would be empty"
        for line in process.raw:
            assert canary not in line, f"{process.name} logged the canary: {line[:300]}"
            assert control not in line, f"{process.name} logged a secret: {line[:300]}"
