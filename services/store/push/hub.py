"""The fan-out hub: one per store process, between the broker feed and the connected streams.

Every event gets an id ``<process epoch>-<sequence>``, increasing within the
process; the random epoch makes an id from another process (or from before a
restart) unknown here rather than silently pointing at a different event.
Each business has a bounded ring of its latest events for ``Last-Event-ID``
replay, which is for reconnects: events also leave it after a few minutes, so
every business that ever had an event costs almost nothing once it is quiet.
Subscribers have bounded queues: a client that falls that far behind is
dropped, so one slow browser never holds up the others.

The hub only sees the businesses the feed is bound for (``bindings``). It
records when a business's last subscriber left, which is what decides when the
feed lets go of it, and ``forget`` marks the moment it does: events may be
missed from then on, so every id issued before is unknown for that business.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import structlog

from store.metrics import StoreMetrics

log = structlog.get_logger(__name__)

EventName = Literal["widget", "sidebar"]

DEFAULT_BUFFER_EVENTS = 500
# A ring also stays under this many bytes of data, so a few huge sidebars cannot pin memory.
DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024
DEFAULT_BUFFER_AGE_S = 300.0
DEFAULT_SUBSCRIBER_QUEUE = 256
_SWEEP_INTERVAL_S = 30.0


@dataclass(frozen=True)
class PushEvent:
    id: str
    seq: int
    name: EventName
    business_id: str
    conversation_id: str
    data: str  # one line of JSON
    received_at: float  # monotonic


class SubscriptionClosed(Exception):
    """The hub ended the subscription: the client fell too far behind, or the hub closed."""


class Subscription:
    """One connected stream's view of the hub; a context manager that unsubscribes on exit."""

    def __init__(
        self,
        hub: PushHub,
        business_id: str,
        conversation_id: str | None,
        *,
        start_id: str,
        replay: list[PushEvent] | None,
        queue_size: int,
    ) -> None:
        self.business_id = business_id
        self.conversation_id = conversation_id
        self.start_id = start_id
        """The id of the newest event the hub had seen when this subscription began."""
        self.replay = replay
        """Events after the client's ``Last-Event-ID``; ``None`` when it gave none or an unknown one."""
        self._hub = hub
        self._queue: asyncio.Queue[PushEvent | None] = asyncio.Queue(maxsize=queue_size)
        self._closed = False
        self.overflowed = False

    def wants(self, event: PushEvent) -> bool:
        return self.conversation_id is None or self.conversation_id == event.conversation_id

    def offer(self, event: PushEvent) -> bool:
        """Queue ``event`` without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def next(self, timeout_s: float) -> PushEvent | None:
        """The next event, or None after ``timeout_s`` without one; raises ``SubscriptionClosed`` once ended."""
        if self._closed:
            raise SubscriptionClosed
        try:
            async with asyncio.timeout(timeout_s):
                event = await self._queue.get()
        except TimeoutError:
            return None
        if event is None:
            raise SubscriptionClosed
        return event

    def end(self) -> None:
        """Stop delivering; a waiting ``next`` wakes up and raises."""
        self._closed = True
        with contextlib.suppress(asyncio.QueueFull):  # a full queue never blocks ``next``, which sees the flag
            self._queue.put_nowait(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._hub.unsubscribe(self)


class _Ring:
    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.events: deque[PushEvent] = deque()
        self.evicted_through = 0  # the sequence of the newest event dropped from this ring
        self._bytes = 0
        self._max_events = max_events
        self._max_bytes = max_bytes

    def append(self, event: PushEvent) -> None:
        self.events.append(event)
        self._bytes += len(event.data)
        while len(self.events) > self._max_events or (self._bytes > self._max_bytes and len(self.events) > 1):
            self._evict_oldest()

    def expire(self, received_before: float) -> None:
        while self.events and self.events[0].received_at < received_before:
            self._evict_oldest()

    def forget(self, through: int) -> None:
        """Drop every event, and refuse replay after any sequence up to ``through``."""
        self.events.clear()
        self._bytes = 0
        self.evicted_through = through

    def _evict_oldest(self) -> None:
        dropped = self.events.popleft()
        self._bytes -= len(dropped.data)
        self.evicted_through = dropped.seq


class PushHub:
    """Buffers events per business and fans them out to that business's subscribers."""

    def __init__(
        self,
        metrics: StoreMetrics,
        *,
        buffer_events: int = DEFAULT_BUFFER_EVENTS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        buffer_age_s: float = DEFAULT_BUFFER_AGE_S,
        subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._rings: dict[str, _Ring] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._idle_since: dict[str, float] = {}  # when each business's last subscriber left
        self._buffer_events = buffer_events
        self._buffer_bytes = buffer_bytes
        self._buffer_age_s = buffer_age_s
        self._subscriber_queue = subscriber_queue
        self._clock = clock
        self._swept_at = clock()
        self._closed = False

    @property
    def buffer_age_s(self) -> float:
        return self._buffer_age_s

    def publish(self, name: EventName, business_id: str, conversation_id: str, data: str) -> PushEvent:
        """Number, buffer and deliver one event; never waits."""
        self._seq += 1
        now = self._clock()
        event = PushEvent(f"{self._epoch}-{self._seq}", self._seq, name, business_id, conversation_id, data, now)
        self._ring(business_id).append(event)
        if now - self._swept_at >= _SWEEP_INTERVAL_S:
            self._swept_at = now
            for each in self._rings.values():
                each.expire(now - self._buffer_age_s)
        for subscription in list(self._subscribers.get(business_id, ())):
            if subscription.wants(event) and not subscription.offer(event):
                log.warning("stream.client_dropped", business_id=business_id, reason="too far behind")
                subscription.overflowed = True
                subscription.end()
                self.unsubscribe(subscription)
        return event

    def subscribe(
        self, business_id: str, conversation_id: str | None = None, last_event_id: str | None = None
    ) -> Subscription:
        """Start delivering ``business_id``'s events (of one conversation, if given) from now on."""
        replay = self._events_after(business_id, conversation_id, last_event_id)
        subscription = Subscription(
            self,
            business_id,
            conversation_id,
            start_id=f"{self._epoch}-{self._seq}",
            replay=replay,
            queue_size=self._subscriber_queue,
        )
        if self._closed:
            subscription.end()  # the store is stopping: the stream ends at once
            return subscription
        self._subscribers.setdefault(business_id, set()).add(subscription)
        self._idle_since.pop(business_id, None)
        self._metrics.stream_clients.inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Idempotent: the hub drops overflowing subscriptions itself, and streams always unsubscribe on exit."""
        subscribers = self._subscribers.get(subscription.business_id)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._subscribers[subscription.business_id]
            self._idle_since[subscription.business_id] = self._clock()
        self._metrics.stream_clients.dec()

    def idle_since(self, business_id: str) -> float | None:
        """When the business's last subscriber left: None while it has one, -inf if it never had one."""
        if business_id in self._subscribers:
            return None
        return self._idle_since.get(business_id, -math.inf)

    def forget(self, business_id: str) -> None:
        """The feed stops taking this business's events: every id issued so far becomes unknown for it,
        so a reconnect starts from the stored sidebar rather than replay across the gap."""
        self._seq += 1  # a number no event gets: even the newest id issued so far falls before it
        self._ring(business_id).forget(self._seq)
        self._idle_since.pop(business_id, None)

    def close(self) -> None:
        """End every subscription, so open streams finish, and refuse new ones."""
        self._closed = True
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.end()
                self.unsubscribe(subscription)

    def _ring(self, business_id: str) -> _Ring:
        ring = self._rings.get(business_id)
        if ring is None:
            ring = self._rings[business_id] = _Ring(self._buffer_events, self._buffer_bytes)
        return ring

    def _events_after(
        self, business_id: str, conversation_id: str | None, last_event_id: str | None
    ) -> list[PushEvent] | None:
        if last_event_id is None:
            return None
        epoch, _, seq_text = last_event_id.partition("-")
        if epoch != self._epoch or not (seq_text.isascii() and seq_text.isdigit()):
            return None
        seq = int(seq_text)
        ring = self._rings.get(business_id)
        if ring is not None:
            ring.expire(self._clock() - self._buffer_age_s)
        evicted_through = ring.evicted_through if ring is not None else 0
        if not evicted_through <= seq <= self._seq:
            return None  # events after it may have been evicted, or it was never issued
        events = ring.events if ring is not None else ()
        return [e for e in events if e.seq > seq and (conversation_id is None or e.conversation_id == conversation_id)]
