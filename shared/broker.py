"""The RabbitMQ adapter: one robust connection, a confirming publisher, consumers.

aio-pika's robust connection re-opens channels, re-declares the topology and
restarts consumers after a broker restart. Driver errors are translated into
``TransientError`` here, so nothing above this module sees aiormq types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    HeadersType,
)

from shared.errors import TransientError
from shared.topology import INTERNAL_EXCHANGE, Topology, declare_topology

log = structlog.get_logger(__name__)

PUBLISH_TIMEOUT_S = 10.0

_DRIVER_ERRORS = (
    aio_pika.exceptions.AMQPException,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    asyncio.TimeoutError,
    RuntimeError,
)


@dataclass(frozen=True)
class OutgoingMessage:
    body: bytes
    message_type: str
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: HeadersType | None = None


OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


class Publisher(Protocol):
    """The publishing half of ``Broker``: what handlers that only publish depend on."""

    async def publish(
        self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool = True
    ) -> None: ...


@dataclass(frozen=True)
class QueueBinding:
    """A private queue: exclusive to this connection, gone with it, bound to one routing key."""

    exchange: str
    routing_key: str


@dataclass
class Subscription:
    """One consumer on a channel of its own, so its prefetch is its own."""

    channel: AbstractChannel
    queue: AbstractQueue
    tag: str

    async def cancel(self) -> None:
        """Stop deliveries; messages in flight can still be settled until ``close``."""
        await self.queue.cancel(self.tag)

    async def close(self) -> None:
        await self.channel.close()


class Broker:
    """A connection with a publishing channel (confirms on), one channel per consumer,
    and a shared channel for no-ack reply queues."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publish_channel: AbstractChannel,
        consume_channel: AbstractChannel,
        topology: Topology,
    ) -> None:
        self.connection = connection
        self._publish_channel = publish_channel
        self.consume_channel = consume_channel
        self.topology = topology

    @classmethod
    async def connect(
        cls, url: str, *, prefetch: int, name: str, connect_timeout_s: float = 60.0, reconnect_interval_s: float = 1.0
    ) -> Broker:
        """Connect, waiting for the broker to come up for at most ``connect_timeout_s``."""
        deadline = time.monotonic() + connect_timeout_s
        delay = 0.25
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    url, client_properties={"connection_name": name}, reconnect_interval=reconnect_interval_s
                )
                break
            except (*_DRIVER_ERRORS, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise TransientError(f"RabbitMQ is unreachable: {type(exc).__name__}: {exc}") from exc
                log.warning("broker.connect_retry", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=prefetch)
        topology = await declare_topology(publish_channel)
        connection.reconnect_callbacks.add(lambda *_: log.warning("broker.reconnected"))
        return cls(connection, publish_channel, consume_channel, topology)

    async def publish(
        self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool = True
    ) -> None:
        """Publish a persistent message and wait for the broker's confirm."""
        headers: HeadersType = dict(message.headers or {})  # aio-pika may add to it
        amqp_message = aio_pika.Message(
            message.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=message.message_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            headers=headers,
        )
        try:
            target = self._exchange(exchange)
            await target.publish(amqp_message, routing_key=routing_key, mandatory=mandatory, timeout=PUBLISH_TIMEOUT_S)
        except _DRIVER_ERRORS as exc:
            raise TransientError(f"publish to {exchange!r}/{routing_key!r} failed: {type(exc).__name__}") from exc

    async def publish_direct(self, queue_name: str, message: OutgoingMessage) -> None:
        """Publish to a queue by name through the default exchange (RPC replies)."""
        await self.publish("", queue_name, message, mandatory=False)

    async def declare_reply_queue(self) -> AbstractQueue:
        """A server-named, exclusive queue for request/reply; it dies with the connection.
        Executors reply on ``sidebar.internal`` with the queue's name as routing key."""
        queue = await self.consume_channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.topology.exchanges[INTERNAL_EXCHANGE], routing_key=queue.name)
        return queue

    def queue(self, name: str) -> AbstractQueue:
        return self.topology.queues[name]

    async def consume(
        self, queue_name: str, on_message: OnMessage, *, prefetch: int | None, private: QueueBinding | None = None
    ) -> Subscription:
        """Consume ``queue_name`` on a channel of its own with ``prefetch`` unacked messages at
        most, or, with ``prefetch`` None, without acks (the broker forgets each message as it
        delivers it).

        With ``private``, the queue is declared here: exclusive, deleted with the
        connection, and re-declared under the same name after a reconnect.
        """
        channel = await self.connection.channel()
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        if private is None:
            queue = await channel.get_queue(queue_name, ensure=True)
        else:
            queue = await channel.declare_queue(queue_name, exclusive=True, auto_delete=True)
            await queue.bind(private.exchange, routing_key=private.routing_key)
        tag = await queue.consume(on_message, no_ack=prefetch is None)
        return Subscription(channel, queue, tag)

    def is_connected(self) -> bool:
        """The connection is up now: aio-pika clears this when it drops and sets it again
        once a reconnect succeeds. Reading it costs nothing (readiness probes)."""
        return self.connection.connected.is_set() and not self.connection.is_closed

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each reconnect: deliveries taken before it are gone."""
        self.connection.reconnect_callbacks.add(lambda *_: callback())

    def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        if name == "":
            return self._publish_channel.default_exchange
        return self.topology.exchanges[name]

    async def close(self) -> None:
        await self.connection.close()
