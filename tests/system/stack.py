"""The full platform, started as real processes for system tests, plus client helpers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from shared.contracts.events import SidebarReady, decode_sidebar_ready
from shared.topology import CONVERSATION_OPENED_KEY, EXCHANGE, sidebar_ready_key, sidebar_ready_pattern
from tests.infra import Infra
from tests.system.harness import ServiceProcess, base_env, free_port, python_module, python_script, wait_http

ADMIN_KEY = "system-test-admin-key-0123456789"


@dataclass
class Stack:
    infra: Infra
    mongodb_url: str
    store_url: str
    mock_api_url: str
    env: dict[str, str]
    store: ServiceProcess
    executor: ServiceProcess
    mock_api: ServiceProcess
    orchestrators: list[ServiceProcess] = field(default_factory=list)

    @property
    def canaries(self) -> list[str]:
        """Strings that occur only in the services' credentials."""
        vhost = urlsplit(self.infra.rabbitmq_url).path.strip("/")
        return [vhost, self.mongodb_url.split("appName=")[1]]

    def all(self) -> list[ServiceProcess]:
        return [self.mock_api, self.store, self.executor, *self.orchestrators]

    def start_orchestrator(self, name: str) -> ServiceProcess:
        process = python_module(name, "orchestrator", {**self.env, "ORCHESTRATOR_METRICS_PORT": str(free_port())})
        process.start().wait_for(lambda line: line.get("event") == "orchestrator.started")
        self.orchestrators.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.all()):
            process.stop()


def start_stack(infra: Infra, *, orchestrators: int = 2) -> Stack:
    canary = f"canary{uuid.uuid4().hex[:12]}"
    mongodb_url = f"{infra.mongodb_url.rstrip('/')}/?appName={canary}"
    store_port, mock_port = free_port(), free_port()
    env = base_env(
        {
            "RABBITMQ_URL": infra.rabbitmq_url,
            "MONGODB_URL": mongodb_url,
            "MONGODB_DATABASE": infra.mongodb_database,
            "STORE_ADMIN_KEY": ADMIN_KEY,
            "STORE_PORT": str(store_port),
            "SIDEBAR_DEADLINE_MARGIN_S": "2",
            "EXECUTOR_CONCURRENCY": "4",
            "EXECUTOR_EGRESS_ALLOW": f"127.0.0.1:{mock_port}",
            "SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
    )
    mock_api = python_script("mock-api", "demo/mock_api.py", ["--port", str(mock_port)], env).start()
    store = python_module("store", "store", env).start()
    executor = python_module("executor", "executor", {**env, "EXECUTOR_METRICS_PORT": str(free_port())}).start()
    stack = Stack(
        infra=infra,
        mongodb_url=mongodb_url,
        store_url=f"http://127.0.0.1:{store_port}",
        mock_api_url=f"http://127.0.0.1:{mock_port}",
        env=env,
        store=store,
        executor=executor,
        mock_api=mock_api,
    )
    try:
        wait_http(f"{stack.mock_api_url}/healthz", mock_api)
        wait_http(f"{stack.store_url}/healthz", store)
        executor.wait_for(lambda line: line.get("event") == "executor.started")
        for n in range(orchestrators):
            stack.start_orchestrator(f"orchestrator-{n + 1}")
    except BaseException:
        stack.stop()
        raise
    return stack


async def create_business(stack: Stack, business_id: str | None = None) -> httpx.AsyncClient:
    """Create a business through the admin API; return a client authorized as it."""
    business_id = business_id or f"biz-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.store_url, timeout=30) as admin:
        response = await admin.post(
            "/v1/businesses",
            json={"business_id": business_id, "name": f"Business {business_id}"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert response.status_code == 201, response.text
        key = response.json()["api_key"]
    return httpx.AsyncClient(
        base_url=f"{stack.store_url}/v1/businesses/{business_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


async def upsert(client: httpx.AsyncClient, path: str, json: dict[str, object]) -> None:
    """PUT a customer or conversation; 201 when it is new, 200 when it replaced one."""
    response = await client.put(path, json=json)
    assert response.status_code in (200, 201), response.text


def business_id_of(client: httpx.AsyncClient) -> str:
    return str(client.base_url).rstrip("/").rsplit("/", 1)[1]


class SidebarSubscription:
    """Sidebars published for one business, received on an exclusive queue as a frontend would."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[SidebarReady] = asyncio.Queue()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        await self.received.put(decode_sidebar_ready(message.body))

    async def next(self, within_s: float = 30.0) -> SidebarReady:
        return await asyncio.wait_for(self.received.get(), within_s)


@asynccontextmanager
async def subscribe_sidebars(stack: Stack, business_id: str) -> AsyncIterator[SidebarSubscription]:
    connection = await aio_pika.connect_robust(stack.infra.rabbitmq_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, sidebar_ready_pattern(business_id, "*"))
        subscription = SidebarSubscription()
        await queue.consume(subscription.on_message, no_ack=True)
        yield subscription
    finally:
        await connection.close()


async def publish_raw_event(stack: Stack, body: bytes) -> None:
    """Publish to the external exchange exactly as an outside client would."""
    connection = await aio_pika.connect_robust(stack.infra.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, routing_key=CONVERSATION_OPENED_KEY)
    finally:
        await connection.close()


def opened_event(business_id: str, conversation_id: str, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "event_id": event_id or uuid.uuid4().hex,
            "business_id": business_id,
            "conversation_id": conversation_id,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


async def publish_sentinel_sidebar(stack: Stack, business_id: str) -> None:
    """A marker sidebar.ready: whatever was routed before it is consumed before it."""
    sentinel = SidebarReady(
        event_id="sentinel",
        business_id=business_id,
        conversation_id="sentinel",
        trigger_event_id="sentinel",
        generated_at=datetime.now(UTC),
        widgets=[],
    )
    connection = await aio_pika.connect_robust(stack.infra.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        message = aio_pika.Message(sentinel.model_dump_json().encode())
        await exchange.publish(message, routing_key=sidebar_ready_key(business_id, "sentinel"))
    finally:
        await connection.close()


@asynccontextmanager
async def subscribe_raw(stack: Stack, *patterns: str) -> AsyncIterator[asyncio.Queue[tuple[str, dict[str, object]]]]:
    """Every message on the ``sidebar`` exchange matching ``patterns``, as (routing key, body)."""
    received: asyncio.Queue[tuple[str, dict[str, object]]] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await received.put((message.routing_key or "", json.loads(message.body)))

    connection = await aio_pika.connect_robust(stack.infra.rabbitmq_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        queue = await channel.declare_queue(exclusive=True)
        for pattern in patterns:
            await queue.bind(exchange, pattern)
        await queue.consume(on_message, no_ack=True)
        yield received
    finally:
        await connection.close()


async def stored_sidebar(
    client: httpx.AsyncClient, conversation_id: str, trigger_event_id: str, *, within_s: float = 30
) -> httpx.Response:
    """The conversation's stored sidebar once it is the one of ``trigger_event_id``.

    The orchestrator records a sidebar right after publishing sidebar.ready, so a reader
    racing the event may briefly see the previous one (docs/events.md).
    """
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        response = await client.get(f"/conversations/{conversation_id}/sidebar")
        if response.status_code == 200 and response.json()["trigger_event_id"] == trigger_event_id:
            return response
        assert asyncio.get_running_loop().time() < deadline, (
            f"sidebar of {trigger_event_id} never stored: {response.text}"
        )
        await asyncio.sleep(0.02)  # polling the store's API: it offers nothing to wait on
