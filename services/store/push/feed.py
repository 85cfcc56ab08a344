"""The hub's feed: the ``sidebar.widget`` and ``sidebar.ready`` events of the businesses it is bound for, off RabbitMQ.

Each store process declares its own exclusive, auto-delete queue, consumed
without acks: a live stream has no use for an event once the process that
held its clients is gone. The queue starts with no binding; ``bind`` adds
``sidebar.widget.<business>.*`` and ``sidebar.ready.<business>.*`` when a
business gets a stream, and ``unbind`` removes them (``bindings`` decides
when), so a process never receives a card nobody here watches. aio-pika's
robust queue remembers every binding made through it and forgets the ones
undone, and re-declares the queue, those bindings and the consumer after a
reconnect; events published while disconnected are lost to the stream (the
stored sidebar still has them). A message that does not decode, or whose
routing key names another business or conversation than its body, is logged
and dropped: it never reaches a client and never stops the feed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue, ConsumerTag
from pydantic import ValidationError

from shared.broker import Broker
from shared.contracts.errors import describe_validation_error
from shared.contracts.events import SidebarReady, SidebarWidgetReady, decode_sidebar_ready, decode_sidebar_widget_ready
from shared.errors import TransientError
from shared.ids import is_valid_id
from shared.topology import EXCHANGE, SIDEBAR_READY_PREFIX, SIDEBAR_WIDGET_PREFIX
from store.metrics import StoreMetrics
from store.push.hub import EventName, PushHub

log = structlog.get_logger(__name__)

_DECODERS: dict[str, tuple[EventName, Callable[[bytes], SidebarReady | SidebarWidgetReady]]] = {
    SIDEBAR_WIDGET_PREFIX: ("widget", decode_sidebar_widget_ready),
    SIDEBAR_READY_PREFIX: ("sidebar", decode_sidebar_ready),
}
_MAX_LOGGED_ERROR = 500
# aio-pika waits for a reconnect without limit before it sends a bind: a stream request must not.
BIND_TIMEOUT_S = 5.0
_DRIVER_ERRORS = (
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    TimeoutError,
    RuntimeError,
)


class BrokerFeed:
    """The broker side of the push path, and the real ``Binder``."""

    def __init__(
        self,
        queue: AbstractQueue,
        exchange: AbstractExchange,
        hub: PushHub,
        metrics: StoreMetrics,
        is_connected: Callable[[], bool],
    ) -> None:
        self._queue = queue
        self._exchange = exchange
        self._hub = hub
        self._metrics = metrics
        self._is_connected = is_connected
        self._consumer_tag: ConsumerTag | None = None

    @classmethod
    async def start(cls, broker: Broker, hub: PushHub, metrics: StoreMetrics) -> BrokerFeed:
        queue = await broker.consume_channel.declare_queue(exclusive=True, auto_delete=True)
        feed = cls(queue, broker.topology.exchanges[EXCHANGE], hub, metrics, broker.is_connected)
        feed._consumer_tag = await queue.consume(feed._on_message, no_ack=True)
        return feed

    async def close(self) -> None:
        if self._consumer_tag is not None:
            await self._queue.cancel(self._consumer_tag)
            self._consumer_tag = None

    async def bind(self, business_id: str) -> None:
        patterns = _patterns(business_id)
        async with self._broker_call(f"bind {business_id!r}"):
            for pattern in patterns:
                await self._queue.bind(self._exchange, routing_key=pattern)

    async def unbind(self, business_id: str) -> None:
        patterns = _patterns(business_id)
        async with self._broker_call(f"unbind {business_id!r}"):
            for pattern in patterns:
                await self._queue.unbind(self._exchange, routing_key=pattern)

    @asynccontextmanager
    async def _broker_call(self, what: str) -> AsyncIterator[None]:
        """Fail at once without a connection, within ``BIND_TIMEOUT_S`` with one; as ``TransientError``."""
        if not self._is_connected():
            raise TransientError(f"cannot {what}: RabbitMQ is not connected")
        try:
            async with asyncio.timeout(BIND_TIMEOUT_S):
                yield
        except _DRIVER_ERRORS as exc:
            raise TransientError(f"{what} failed: {type(exc).__name__}") from exc

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # No await in here: aio-pika runs one task per message, and they start in arrival order.
        self._accept(message.routing_key or "", message.body)

    def _accept(self, routing_key: str, body: bytes) -> None:
        """Decode, check the routing key against the body, and hand the event to the hub."""
        words = routing_key.split(".")
        kind = _DECODERS.get(".".join(words[:2])) if len(words) == 4 else None
        if kind is None:
            self._drop(routing_key, "unexpected routing key")
            return
        name, decode = kind
        try:
            event = decode(body)
        except ValidationError as exc:
            self._drop(routing_key, describe_validation_error(exc))
            return
        if (event.business_id, event.conversation_id) != (words[2], words[3]):
            self._drop(routing_key, "the routing key names another business or conversation than the body")
            return
        self._metrics.stream_events.labels(name).inc()
        self._hub.publish(name, event.business_id, event.conversation_id, event.model_dump_json())

    def _drop(self, routing_key: str, reason: str) -> None:
        self._metrics.stream_events.labels("invalid").inc()
        log.warning("stream.event_dropped", routing_key=routing_key[:300], reason=reason[:_MAX_LOGGED_ERROR])


def _patterns(business_id: str) -> list[str]:
    # An id never holds '.', '*' or '#' (shared/ids.py); one that did would change what its pattern matches.
    if not is_valid_id(business_id):
        raise ValueError(f"not a business id: {business_id!r}")
    return [f"{prefix}.{business_id}.*" for prefix in _DECODERS]
