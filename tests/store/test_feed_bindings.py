"""The feed's bindings: one behaviour suite over the in-memory binder and over ``BrokerFeed`` on the test
run's RabbitMQ, then what only the fake can show (a bind held in flight, a broker that comes back).

A business is routed to the process once ``watch`` returns, stays routed while it has streams and for the
replay-buffer age after the last one (so a reconnect replays), and is then unbound, after which its old
ids are unknown. The clock is driven by hand; the sweep that the store runs every 30 s is called directly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from shared.broker import Broker, OutgoingMessage
from shared.contracts.events import SIDEBAR_WIDGET
from shared.errors import TransientError
from shared.topology import EXCHANGE, sidebar_widget_key
from store.metrics import StoreMetrics
from store.push.binder import Binder
from store.push.bindings import FeedBindings
from store.push.feed import BrokerFeed
from store.push.hub import PushHub
from store.push.memory_binder import MemoryBinder
from tests.infra import Infra
from tests.store.test_stream import WAIT_S, card

LINGER_S = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingBinder:
    """Forwards to the real binder and records each call, as ``MemoryBinder.calls`` does."""

    def __init__(self, inner: Binder) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    async def bind(self, business_id: str) -> None:
        self.calls.append(("bind", business_id))
        await self.inner.bind(business_id)

    async def unbind(self, business_id: str) -> None:
        self.calls.append(("unbind", business_id))
        await self.inner.unbind(business_id)


@dataclass
class Rig:
    binder: Binder
    hub: PushHub
    bindings: FeedBindings
    metrics: StoreMetrics
    clock: Clock
    calls: list[tuple[str, str]]
    routed: Callable[[str], Awaitable[bool]]
    """Whether an event of the business published now reaches the hub."""
    break_binder: Callable[[], Awaitable[None]]
    """From now on every bind and unbind fails, as with a broker that is down."""


def business() -> str:
    return f"biz-{uuid.uuid4().hex[:12]}"


def bound_gauge(metrics: StoreMetrics) -> float | None:
    return metrics.registry.get_sample_value("store_stream_bound_businesses")


def widgets_taken(metrics: StoreMetrics) -> float:
    return metrics.registry.get_sample_value("store_stream_events_total", {"type": "widget"}) or 0.0


@pytest.fixture
async def memory_rig() -> AsyncIterator[Rig]:
    clock, metrics, binder = Clock(), StoreMetrics(), MemoryBinder()
    hub = PushHub(metrics, buffer_age_s=LINGER_S, clock=clock)
    bindings = FeedBindings(binder, hub, metrics, clock=clock)

    async def routed(business_id: str) -> bool:
        if business_id in binder.bound:
            hub.publish("widget", business_id, "probe", "{}")  # what the broker's delivery would do
        return business_id in binder.bound

    async def break_binder() -> None:
        binder.broken = True

    yield Rig(binder, hub, bindings, metrics, clock, binder.calls, routed, break_binder)
    await bindings.close()


@pytest.fixture
async def rabbitmq_rig(infra: Infra) -> AsyncIterator[Rig]:
    clock, metrics = Clock(), StoreMetrics()
    hub = PushHub(metrics, buffer_age_s=LINGER_S, clock=clock)
    broker = await Broker.connect(infra.rabbitmq_url, prefetch=1, name="feed-tests-store", connect_timeout_s=5)
    publisher = await Broker.connect(infra.rabbitmq_url, prefetch=1, name="feed-tests", connect_timeout_s=5)
    feed = await BrokerFeed.start(broker, hub, metrics)
    binder = RecordingBinder(feed)
    bindings = FeedBindings(binder, hub, metrics, clock=clock)
    # A business bound beside the bookkeeping: its event, published after the probed one, marks when the
    # probed one would have arrived, since one queue delivers in publish order.
    marker_business = business()
    await feed.bind(marker_business)
    markers = hub.subscribe(marker_business)

    async def routed(business_id: str) -> bool:
        before = widgets_taken(metrics)
        for event in (card(business_id, "probe"), card(marker_business, "marker")):
            key = sidebar_widget_key(event.business_id, event.conversation_id)
            message = OutgoingMessage(event.model_dump_json().encode(), message_type=SIDEBAR_WIDGET)
            await publisher.publish(EXCHANGE, key, message, mandatory=False)
        assert await markers.next(WAIT_S) is not None, "the marker did not arrive"
        return widgets_taken(metrics) - before == 2

    async def break_binder() -> None:
        await broker.close()

    try:
        yield Rig(feed, hub, bindings, metrics, clock, binder.calls, routed, break_binder)
    finally:
        markers.__exit__(None, None, None)
        await bindings.close()
        if broker.is_connected():  # a closed connection would hold the cancel until it came back
            await feed.close()
        await broker.close()
        await publisher.close()


@pytest.fixture(params=["memory", "rabbitmq"])
def rig(request: pytest.FixtureRequest) -> Rig:
    rig: Rig = request.getfixturevalue(f"{request.param}_rig")
    return rig


async def test_a_watched_business_is_routed_once_watch_returns(rig: Rig) -> None:
    watched, other = business(), business()
    await rig.bindings.watch(watched)

    assert await rig.routed(watched)
    assert not await rig.routed(other)
    assert rig.calls == [("bind", watched)]
    assert rig.bindings.bound() == {watched}
    assert bound_gauge(rig.metrics) == 1


async def test_concurrent_watches_of_a_business_share_one_bind(rig: Rig) -> None:
    watched = business()
    await asyncio.gather(*(rig.bindings.watch(watched) for _ in range(3)))
    await rig.bindings.watch(watched)

    assert rig.calls == [("bind", watched)]
    assert await rig.routed(watched)


async def test_a_business_with_a_stream_stays_bound_however_long_it_lasts(rig: Rig) -> None:
    watched = business()
    await rig.bindings.watch(watched)
    with rig.hub.subscribe(watched):
        rig.clock.now += 10 * LINGER_S
        await rig.bindings.sweep()
        assert await rig.routed(watched)

    assert rig.calls == [("bind", watched)]


async def test_the_binding_outlives_the_last_stream_by_the_linger_so_a_reconnect_replays(rig: Rig) -> None:
    watched = business()
    await rig.bindings.watch(watched)
    with rig.hub.subscribe(watched):
        seen = rig.hub.publish("widget", watched, "c1", '{"n": 1}')
    missed = rig.hub.publish("widget", watched, "c1", '{"n": 2}')  # taken while no stream is open
    rig.clock.now += LINGER_S - 1
    await rig.bindings.sweep()

    await rig.bindings.watch(watched)
    with rig.hub.subscribe(watched, last_event_id=seen.id) as reconnected:
        assert reconnected.replay == [missed]
    assert rig.calls == [("bind", watched)]
    assert await rig.routed(watched)


async def test_after_the_linger_the_business_is_unbound_and_its_old_ids_are_unknown(rig: Rig) -> None:
    watched = business()
    await rig.bindings.watch(watched)
    with rig.hub.subscribe(watched):
        seen = rig.hub.publish("widget", watched, "c1", "{}")
    rig.clock.now += LINGER_S
    await rig.bindings.sweep()

    assert rig.calls == [("bind", watched), ("unbind", watched)]
    assert rig.bindings.bound() == set()
    assert bound_gauge(rig.metrics) == 0
    assert not await rig.routed(watched)

    await rig.bindings.watch(watched)
    with rig.hub.subscribe(watched, last_event_id=seen.id) as reconnected:
        assert reconnected.replay is None  # the stream falls back to the stored sidebar
    with rig.hub.subscribe(watched, last_event_id=reconnected.start_id) as after_the_gap:
        assert after_the_gap.replay == []
    assert await rig.routed(watched)


async def test_a_watch_without_a_stream_holds_the_binding_for_the_linger(rig: Rig) -> None:
    """A stream watches before it subscribes; one that never subscribes (its client left) is let go of."""
    watched = business()
    await rig.bindings.watch(watched)
    rig.clock.now += LINGER_S - 1
    await rig.bindings.sweep()
    assert rig.calls == [("bind", watched)]

    rig.clock.now += 1
    await rig.bindings.sweep()
    assert rig.calls == [("bind", watched), ("unbind", watched)]


async def test_a_watch_racing_an_unbind_ends_bound(rig: Rig) -> None:
    watched = business()
    await rig.bindings.watch(watched)
    rig.clock.now += LINGER_S

    await asyncio.gather(rig.bindings.sweep(), rig.bindings.watch(watched))

    assert rig.calls == [("bind", watched), ("unbind", watched), ("bind", watched)]
    assert rig.bindings.bound() == {watched}
    assert await rig.routed(watched)


async def test_a_failed_bind_fails_every_watch_waiting_for_it(rig: Rig) -> None:
    watched = business()
    await rig.break_binder()

    outcomes = await asyncio.gather(*(rig.bindings.watch(watched) for _ in range(2)), return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [TransientError, TransientError]
    assert rig.calls == [("bind", watched)]
    assert rig.bindings.bound() == set()
    assert bound_gauge(rig.metrics) == 0


async def test_a_business_id_that_would_change_the_pattern_is_refused(rig: Rig) -> None:
    for wrong in ("a.b", "a*", "#", ""):
        with pytest.raises(ValueError, match="not a business id"):
            await rig.bindings.watch(wrong)
        with pytest.raises(ValueError, match="not a business id"):
            await rig.binder.bind(wrong)

    assert rig.calls == []
    assert rig.bindings.bound() == set()


# What only the fake can show.


async def test_a_second_watch_waits_for_the_bind_in_flight() -> None:
    binder, metrics = MemoryBinder(), StoreMetrics()
    bindings = FeedBindings(binder, PushHub(metrics), metrics)
    binder.release.clear()
    first = asyncio.create_task(bindings.watch("acme"))
    second = asyncio.create_task(bindings.watch("acme"))
    async with asyncio.timeout(WAIT_S):
        await binder.holding.wait()

    assert not first.done() and not second.done()
    binder.release.set()
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(first, second)
    assert binder.calls == [("bind", "acme")]
    assert binder.bound == {"acme"}


async def test_a_watch_that_goes_away_does_not_cancel_the_bind_others_wait_for() -> None:
    binder, metrics = MemoryBinder(), StoreMetrics()
    bindings = FeedBindings(binder, PushHub(metrics), metrics)
    binder.release.clear()
    leaving = asyncio.create_task(bindings.watch("acme"))
    staying = asyncio.create_task(bindings.watch("acme"))
    async with asyncio.timeout(WAIT_S):
        await binder.holding.wait()
    leaving.cancel()

    binder.release.set()
    async with asyncio.timeout(WAIT_S):
        await staying
    assert leaving.cancelled()
    assert binder.calls == [("bind", "acme")]
    assert bindings.bound() == {"acme"}


async def test_a_failed_bind_is_retried_by_the_next_watch_and_cleaned_up_by_a_sweep() -> None:
    clock, binder, metrics = Clock(), MemoryBinder(), StoreMetrics()
    bindings = FeedBindings(binder, PushHub(metrics, buffer_age_s=LINGER_S, clock=clock), metrics, clock=clock)
    binder.broken = True
    with pytest.raises(TransientError):
        await bindings.watch("acme")
    with pytest.raises(TransientError):
        await bindings.watch("globex")

    binder.broken = False
    await bindings.watch("acme")
    clock.now += LINGER_S
    await bindings.sweep()

    # The broker may have kept part of globex's failed bind: the sweep unbinds it all the same.
    assert binder.calls[:3] == [("bind", "acme"), ("bind", "globex"), ("bind", "acme")]
    assert sorted(binder.calls[3:]) == [("unbind", "acme"), ("unbind", "globex")]
    assert bindings.bound() == set()


async def test_a_failed_unbind_is_tried_again_by_the_next_sweep() -> None:
    clock, binder, metrics = Clock(), MemoryBinder(), StoreMetrics()
    hub = PushHub(metrics, buffer_age_s=LINGER_S, clock=clock)
    bindings = FeedBindings(binder, hub, metrics, clock=clock)
    await bindings.watch("acme")
    clock.now += LINGER_S
    binder.broken = True
    await bindings.sweep()
    binder.broken = False
    await bindings.sweep()

    assert binder.calls == [("bind", "acme"), ("unbind", "acme"), ("unbind", "acme")]
    assert binder.bound == set()
    assert bound_gauge(metrics) == 0


def test_forgetting_a_business_makes_even_the_newest_id_unknown() -> None:
    hub = PushHub(StoreMetrics())
    newest = hub.publish("widget", "acme", "c1", "{}")
    hub.forget("acme")

    with hub.subscribe("acme", last_event_id=newest.id) as before_the_gap:
        assert before_the_gap.replay is None
    with hub.subscribe("acme", last_event_id=before_the_gap.start_id) as after_the_gap:
        assert after_the_gap.replay == []


def test_the_hub_tells_when_a_business_last_had_a_subscriber() -> None:
    clock = Clock()
    hub = PushHub(StoreMetrics(), clock=clock)
    assert hub.idle_since("acme") == float("-inf")
    with hub.subscribe("acme"):
        with hub.subscribe("acme"):
            assert hub.idle_since("acme") is None
        assert hub.idle_since("acme") is None
    clock.now += 1
    assert hub.idle_since("acme") == clock.now - 1
