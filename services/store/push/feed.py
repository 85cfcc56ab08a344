"""The hub's feed: every ``sidebar.widget`` and ``sidebar.ready`` event, off RabbitMQ.

Each store process binds its own exclusive, auto-delete queue, consumed without
acks: a live stream has no use for an event once the process that held its
clients is gone. aio-pika's robust queue re-declares the queue, its bindings
and the consumer after a reconnect; events published while disconnected are
lost to the stream (the stored sidebar still has them). A message that does not
decode, or whose routing key names another business or conversation than its
body, is logged and dropped: it never reaches a client and never stops the feed.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, ConsumerTag
from pydantic import ValidationError

from shared.broker import Broker
from shared.contracts.errors import describe_validation_error
from shared.contracts.events import SidebarReady, SidebarWidgetReady, decode_sidebar_ready, decode_sidebar_widget_ready
from shared.topology import EXCHANGE, SIDEBAR_READY_PREFIX, SIDEBAR_WIDGET_PREFIX
from store.metrics import StoreMetrics
from store.push.hub import EventName, PushHub

log = structlog.get_logger(__name__)

_DECODERS: dict[str, tuple[EventName, Callable[[bytes], SidebarReady | SidebarWidgetReady]]] = {
    SIDEBAR_WIDGET_PREFIX: ("widget", decode_sidebar_widget_ready),
    SIDEBAR_READY_PREFIX: ("sidebar", decode_sidebar_ready),
}
_MAX_LOGGED_ERROR = 500


class BrokerFeed:
    def __init__(self, queue: AbstractQueue, hub: PushHub, metrics: StoreMetrics) -> None:
        self._queue = queue
        self._hub = hub
        self._metrics = metrics
        self._consumer_tag: ConsumerTag | None = None

    @classmethod
    async def start(cls, broker: Broker, hub: PushHub, metrics: StoreMetrics) -> BrokerFeed:
        queue = await broker.consume_channel.declare_queue(exclusive=True, auto_delete=True)
        exchange = broker.topology.exchanges[EXCHANGE]
        for prefix in _DECODERS:
            await queue.bind(exchange, routing_key=f"{prefix}.#")
        feed = cls(queue, hub, metrics)
        feed._consumer_tag = await queue.consume(feed._on_message, no_ack=True)
        return feed

    async def close(self) -> None:
        if self._consumer_tag is not None:
            await self._queue.cancel(self._consumer_tag)
            self._consumer_tag = None

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
