"""The live stream: broker events fanned out per business over Server-Sent Events.

httpx's ASGITransport buffers a whole response, so these tests serve the app
with a real uvicorn server on a free port and read the stream as it comes.
Events are published straight onto the ``sidebar`` exchange, as the
orchestrator does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase
from structlog.testing import capture_logs

from shared.broker import Broker, OutgoingMessage
from shared.contracts.events import (
    SIDEBAR_READY,
    SIDEBAR_WIDGET,
    SidebarReady,
    SidebarWidget,
    SidebarWidgetReady,
)
from shared.contracts.widget_output import WidgetOutput
from shared.ids import scoped_key
from shared.latest_sidebar import latest_update
from shared.mongo import SIDEBARS, Document
from shared.topology import EXCHANGE, sidebar_ready_key, sidebar_widget_key
from store.app import create_app
from store.dependencies import StoreDependencies, open_store
from store.metrics import StoreMetrics
from store.push.hub import PushHub, SubscriptionClosed
from store.settings import StoreSettings
from tests.infra import Infra
from tests.store.conftest import NewTenant, Tenant

WAIT_S = 10.0

Event = SidebarWidgetReady | SidebarReady


@dataclass(frozen=True)
class Frame:
    """One SSE block: an event (id, name, data) or a comment."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        assert self.data is not None, self
        return json.loads(self.data)


class StreamReader:
    """Parses the response into frames on a task of its own, so a test may stop waiting without
    cancelling the read (a cancelled httpx line iterator is finished for good)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if fields:
                        self._frames.put_nowait(Frame(**fields))
                    fields = {}
                    continue
                name, _, value = line.partition(":")
                fields["comment" if name == "" else name] = value.removeprefix(" ")
        finally:
            self._frames.put_nowait(None)

    async def frame(self, timeout_s: float = WAIT_S) -> Frame:
        async with asyncio.timeout(timeout_s):
            frame = await self._frames.get()
        if frame is None:
            raise AssertionError("the stream ended")
        return frame

    async def event(self, timeout_s: float = WAIT_S) -> Frame:
        """The next event, skipping comments."""
        async with asyncio.timeout(timeout_s):
            while (frame := await self.frame()).comment is not None:
                pass
        return frame

    async def events(self, count: int) -> list[Frame]:
        return [await self.event() for _ in range(count)]

    async def ended(self) -> bool:
        """Wait for the server to end the stream; True if it sent no event before that."""
        async with asyncio.timeout(WAIT_S):
            while (frame := await self._frames.get()) is not None:
                if frame.comment is None:
                    return False
        return True

    async def close(self) -> None:
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port; the socket listens before serve starts, so no wait is needed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, ws="none")
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def live_store(settings: StoreSettings, deps: StoreDependencies) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(create_app(settings, dependencies=deps)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT_S) as http,
    ):
        yield http


@pytest.fixture
async def live(settings: StoreSettings, deps: StoreDependencies) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the app served by a real uvicorn server."""
    async with live_store(settings, deps) as http:
        yield http


@pytest.fixture
async def publisher(infra: Infra) -> AsyncIterator[Broker]:
    broker = await Broker.connect(infra.rabbitmq_url, prefetch=1, name="stream-tests", connect_timeout_s=5)
    try:
        yield broker
    finally:
        await broker.close()


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    business_id: str,
    *,
    headers: dict[str, str] | None = None,
    **params: str,
) -> AsyncIterator[StreamReader]:
    """Connect and wait for the ``: connected`` comment: from then on no published event is missed."""
    async with http.stream("GET", f"/v1/businesses/{business_id}/stream", params=params, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        reader = StreamReader(response)
        try:
            assert (await reader.frame()).comment == "connected"
            yield reader
        finally:
            await reader.close()


def card(business_id: str, conversation_id: str, widget_id: str = "crm", trigger: str = "t1") -> SidebarWidgetReady:
    return SidebarWidgetReady(
        event_id=f"{trigger}{widget_id}",
        business_id=business_id,
        conversation_id=conversation_id,
        trigger_event_id=trigger,
        widget=SidebarWidget(
            widget_id=widget_id,
            name=widget_id.upper(),
            position=0,
            status="ok",
            duration_ms=12,
            data=WidgetOutput(title=widget_id.upper(), items=[]),
            error=None,
        ),
    )


def sidebar(business_id: str, conversation_id: str, trigger: str = "t1") -> SidebarReady:
    widget = card(business_id, conversation_id, trigger=trigger).widget
    return SidebarReady(
        event_id=f"sidebar-{trigger}",
        business_id=business_id,
        conversation_id=conversation_id,
        trigger_event_id=trigger,
        generated_at=datetime.now(UTC),
        widgets=[widget],
    )


async def publish_raw(
    broker: Broker, routing_key: str, body: bytes, message_type: str = SIDEBAR_WIDGET, *, mandatory: bool = True
) -> None:
    """Mandatory by default, so a publish that no hub queue takes fails the test at once."""
    await broker.publish(EXCHANGE, routing_key, OutgoingMessage(body, message_type=message_type), mandatory=mandatory)


async def publish(broker: Broker, event: Event, *, mandatory: bool = True) -> None:
    if isinstance(event, SidebarReady):
        key, kind = sidebar_ready_key(event.business_id, event.conversation_id), SIDEBAR_READY
    else:
        key, kind = sidebar_widget_key(event.business_id, event.conversation_id), SIDEBAR_WIDGET
    await publish_raw(broker, key, event.model_dump_json().encode(), kind, mandatory=mandatory)


def as_json(event: Event) -> Any:
    return event.model_dump(mode="json")


def sequence(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.rsplit("-", 1)[1])


async def store_latest_sidebar(db: AsyncDatabase[Document], latest: SidebarReady) -> None:
    """Write the latest sidebar the way the orchestrator does."""
    await db[SIDEBARS].update_one(
        {"_id": scoped_key(latest.business_id, latest.conversation_id)},
        latest_update(latest, latest.model_dump_json()),
        upsert=True,
    )


async def test_a_business_events_arrive_in_order_with_increasing_ids(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker
) -> None:
    sent: list[Event] = [
        card(tenant.business_id, "c1", "crm"),
        card(tenant.business_id, "c2", "orders"),
        sidebar(tenant.business_id, "c1"),
    ]
    async with open_stream(live, tenant.business_id, headers=tenant.headers) as stream:
        for event in sent:
            await publish(publisher, event)
        received = await stream.events(3)

    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.response.headers["cache-control"] == "no-cache"
    assert stream.response.headers["x-accel-buffering"] == "no"
    assert [frame.event for frame in received] == ["widget", "widget", "sidebar"]
    assert [frame.json() for frame in received] == [as_json(event) for event in sent]
    ids = [sequence(frame.id) for frame in received]
    assert ids == sorted(set(ids))


async def test_a_stream_never_carries_another_business_events(
    live: httpx.AsyncClient, new_tenant: NewTenant, publisher: Broker
) -> None:
    a, b = await new_tenant(), await new_tenant()
    async with (
        open_stream(live, a.business_id, headers=a.headers) as stream_a,
        open_stream(live, b.business_id, headers=b.headers) as stream_b,
    ):
        await publish(publisher, card(b.business_id, "c", "b1"))
        await publish(publisher, card(a.business_id, "c", "a1"))
        # A's routing key with B's body: dropped, on neither stream.
        await publish_raw(
            publisher, sidebar_widget_key(a.business_id, "c"), card(b.business_id, "c").model_dump_json().encode()
        )
        await publish(publisher, card(b.business_id, "c", "b2"))
        await publish(publisher, card(a.business_id, "c", "a2"))
        received_a = await stream_a.events(2)
        received_b = await stream_b.events(2)

    assert [f.json()["widget"]["widget_id"] for f in received_a] == ["a1", "a2"]
    assert [f.json()["widget"]["widget_id"] for f in received_b] == ["b1", "b2"]
    assert {f.json()["business_id"] for f in received_a} == {a.business_id}


async def test_the_store_takes_no_event_of_a_business_without_a_stream(
    live: httpx.AsyncClient, new_tenant: NewTenant, publisher: Broker, deps: StoreDependencies
) -> None:
    watched, unwatched = await new_tenant(), await new_tenant()
    async with open_stream(live, watched.business_id, headers=watched.headers) as stream:
        await publish(publisher, card(unwatched.business_id, "c", "unseen"), mandatory=False)
        # Published after it on the same channel: had the unwatched card been routed here, it would be in first.
        await publish(publisher, card(watched.business_id, "c", "marker"))
        marker = await stream.event()

    assert marker.json()["widget"]["widget_id"] == "marker"
    assert stream_events(deps.metrics, "widget") == 1
    assert deps.feed_bindings.bound() == {watched.business_id}
    assert deps.metrics.registry.get_sample_value("store_stream_bound_businesses") == 1


async def test_a_conversation_stream_carries_only_that_conversation(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker
) -> None:
    async with open_stream(live, tenant.business_id, headers=tenant.headers, conversation_id="c1") as stream:
        await publish(publisher, card(tenant.business_id, "c2", "other"))
        await publish(publisher, sidebar(tenant.business_id, "c2"))
        await publish(publisher, card(tenant.business_id, "c1", "mine"))
        first = await stream.event()

    assert first.event == "widget"
    assert first.json()["conversation_id"] == "c1"
    assert first.json()["widget"]["widget_id"] == "mine"


async def test_a_late_client_gets_the_latest_stored_sidebar_first(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker, db: AsyncDatabase[Document]
) -> None:
    stored = sidebar(tenant.business_id, "c1", trigger="earlier")
    await store_latest_sidebar(db, stored)

    async with open_stream(live, tenant.business_id, headers=tenant.headers, conversation_id="c1") as stream:
        first = await stream.event()
        await publish(publisher, card(tenant.business_id, "c1", trigger="later"))
        second = await stream.event()

    assert first.event == "sidebar"
    assert first.json() == as_json(stored)
    assert second.json()["trigger_event_id"] == "later"
    assert sequence(second.id) > sequence(first.id)


async def test_a_business_wide_stream_does_not_start_with_a_stored_sidebar(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker, db: AsyncDatabase[Document]
) -> None:
    await store_latest_sidebar(db, sidebar(tenant.business_id, "c1", trigger="earlier"))

    async with open_stream(live, tenant.business_id, headers=tenant.headers) as stream:
        await publish(publisher, card(tenant.business_id, "c1", trigger="live"))
        first = await stream.event()

    assert first.json()["trigger_event_id"] == "live"


async def test_last_event_id_replays_the_events_after_it_instead_of_the_stored_sidebar(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker, db: AsyncDatabase[Document]
) -> None:
    await store_latest_sidebar(db, sidebar(tenant.business_id, "c1", trigger="stored"))
    sent = [card(tenant.business_id, "c1", f"w{i}") for i in range(3)]
    async with open_stream(live, tenant.business_id, headers=tenant.headers) as observer:
        for event in sent:
            await publish(publisher, event)
        seen = await observer.events(3)

    async with open_stream(
        live, tenant.business_id, headers={**tenant.headers, "Last-Event-ID": str(seen[0].id)}, conversation_id="c1"
    ) as by_header:
        replayed_by_header = await by_header.events(2)
    async with open_stream(
        live, tenant.business_id, headers=tenant.headers, conversation_id="c1", last_event_id=str(seen[1].id)
    ) as by_query:
        replayed_by_query = await by_query.event()

    assert [(f.id, f.json()) for f in replayed_by_header] == [
        (seen[1].id, as_json(sent[1])),
        (seen[2].id, as_json(sent[2])),
    ]
    assert (replayed_by_query.id, replayed_by_query.json()) == (seen[2].id, as_json(sent[2]))


async def test_an_unknown_last_event_id_sends_the_latest_sidebar_instead(
    live: httpx.AsyncClient, tenant: Tenant, db: AsyncDatabase[Document]
) -> None:
    stored = sidebar(tenant.business_id, "c1", trigger="stored")
    await store_latest_sidebar(db, stored)
    resume = {**tenant.headers, "Last-Event-ID": "0123abcd-7"}  # another process's id

    async with open_stream(live, tenant.business_id, headers=resume, conversation_id="c1") as stream:
        first = await stream.event()

    assert (first.event, first.json()) == ("sidebar", as_json(stored))


async def test_invalid_messages_are_logged_and_dropped_and_the_feed_keeps_going(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker, deps: StoreDependencies
) -> None:
    key = sidebar_widget_key(tenant.business_id, "c1")
    with capture_logs() as logs:
        async with open_stream(live, tenant.business_id, headers=tenant.headers) as stream:
            await publish_raw(publisher, key, b"not json")
            await publish_raw(publisher, key, b'{"event_id": "x"}')
            # Three words: the business's binding (four) does not take it, so it never reaches the store.
            await publish_raw(
                publisher,
                f"sidebar.widget.{tenant.business_id}",
                card(tenant.business_id, "c1").model_dump_json().encode(),
                mandatory=False,
            )
            await publish(publisher, card(tenant.business_id, "c1", "valid"))
            first = await stream.event()

    assert first.json()["widget"]["widget_id"] == "valid"
    dropped = [entry for entry in logs if entry["event"] == "stream.event_dropped"]
    assert dropped[0]["reason"] == "(root): invalid JSON"
    assert len(dropped) == 2
    assert stream_events(deps.metrics, "invalid") == 2
    assert stream_events(deps.metrics, "widget") == 1


async def test_a_quiet_stream_sends_keep_alive_comments(settings: StoreSettings, tenant: Tenant) -> None:
    quick = settings.model_copy(update={"store_stream_keepalive_s": 0.05})
    async with (
        open_store(quick) as deps,
        live_store(quick, deps) as http,
        open_stream(http, tenant.business_id, headers=tenant.headers) as stream,
    ):
        frames = [await stream.frame() for _ in range(2)]

    assert frames == [Frame(comment="keep-alive"), Frame(comment="keep-alive")]


async def test_a_stream_token_opens_the_stream(live: httpx.AsyncClient, tenant: Tenant, publisher: Broker) -> None:
    issued = await live.post(tenant.path("/stream-tokens"), headers=tenant.headers)
    assert issued.status_code == 201

    async with open_stream(live, tenant.business_id, token=issued.json()["token"]) as stream:
        await publish(publisher, card(tenant.business_id, "c1"))
        first = await stream.event()

    assert first.json()["business_id"] == tenant.business_id


def stream_clients(metrics: StoreMetrics) -> float | None:
    return metrics.registry.get_sample_value("store_stream_clients")


def stream_events(metrics: StoreMetrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value("store_stream_events_total", {"type": kind})


async def wait_for_clients(metrics: StoreMetrics, count: int) -> None:
    """Disconnects are noticed by the server asynchronously; poll the gauge until it agrees."""
    async with asyncio.timeout(WAIT_S):
        while stream_clients(metrics) != count:  # noqa: ASYNC110 - a metric has no event to await
            await asyncio.sleep(0.01)


async def test_the_client_gauge_follows_connects_and_disconnects(
    live: httpx.AsyncClient, tenant: Tenant, deps: StoreDependencies
) -> None:
    async with open_stream(live, tenant.business_id, headers=tenant.headers):
        connected = stream_clients(deps.metrics)

    await wait_for_clients(deps.metrics, 0)
    assert connected == 1


async def test_closing_the_hub_ends_open_streams(
    live: httpx.AsyncClient, tenant: Tenant, deps: StoreDependencies
) -> None:
    async with open_stream(live, tenant.business_id, headers=tenant.headers) as stream:
        deps.push.close()
        ended_quietly = await stream.ended()

    assert ended_quietly
    await wait_for_clients(deps.metrics, 0)
    with deps.push.subscribe(tenant.business_id) as late, pytest.raises(SubscriptionClosed):
        await late.next(1.0)  # a stream that connects while the store stops ends at once


def _store_connections(vhost: str) -> list[str]:
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "vhost", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in listing.splitlines()]
    return [row[0] for row in rows if len(row) == 3 and row[1] == vhost and '{"connection_name","store"}' in row[2]]


async def test_the_feed_keeps_working_after_the_broker_drops_the_connection(
    live: httpx.AsyncClient, tenant: Tenant, publisher: Broker, infra: Infra
) -> None:
    [connection] = _store_connections(unquote(urlsplit(infra.rabbitmq_url).path[1:]))
    async with open_stream(live, tenant.business_id, headers=tenant.headers) as stream:
        await asyncio.to_thread(
            subprocess.run, ["rabbitmqctl", "close_connection", connection, "test: reconnect"], check=True, timeout=60
        )
        # Events published before aio-pika has restored the queue are lost; publish until one arrives.
        async with asyncio.timeout(30):
            while True:
                await publish(publisher, card(tenant.business_id, "c1", "after"), mandatory=False)
                try:
                    first = await stream.event(timeout_s=0.5)
                    break
                except TimeoutError:
                    continue

    assert first.json()["widget"]["widget_id"] == "after"


async def test_a_slow_subscriber_is_dropped_without_holding_up_the_others() -> None:
    hub = PushHub(StoreMetrics(), subscriber_queue=2)
    with hub.subscribe("acme") as slow, hub.subscribe("acme") as fast:
        delivered = []
        for n in range(3):
            hub.publish("widget", "acme", "c1", f'{{"n": {n}}}')
            event = await fast.next(1.0)
            assert event is not None
            delivered.append(event.data)

        with pytest.raises(SubscriptionClosed):
            await slow.next(1.0)

    assert delivered == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert slow.overflowed and not fast.overflowed


async def test_replay_is_refused_once_the_ring_has_evicted_past_the_id() -> None:
    hub = PushHub(StoreMetrics(), buffer_events=2)
    first = hub.publish("widget", "acme", "c1", "{}")
    for _ in range(3):
        hub.publish("widget", "acme", "c1", "{}")
    latest = hub.publish("widget", "acme", "c1", "{}")

    with hub.subscribe("acme", last_event_id=first.id) as too_old:
        assert too_old.replay is None
    with hub.subscribe("acme", last_event_id=latest.id) as current:
        assert current.replay == []
    with hub.subscribe("other", last_event_id=first.id) as quiet_business:
        assert quiet_business.replay == []


async def test_replay_is_refused_for_events_older_than_the_buffer_age() -> None:
    now = 0.0
    hub = PushHub(StoreMetrics(), buffer_age_s=60, clock=lambda: now)
    first = hub.publish("widget", "acme", "c1", "{}")
    latest = hub.publish("widget", "acme", "c1", "{}")
    now = 61.0

    with hub.subscribe("acme", last_event_id=first.id) as too_old:
        assert too_old.replay is None
    with hub.subscribe("acme", last_event_id=latest.id) as current:
        assert current.replay == []
