"""The RabbitMQ adapter: one robust connection, a confirming publisher, consumers.

aio-pika's robust connection re-opens channels, re-declares the topology and
restarts consumers after a broker restart. Driver errors are translated into
``TransientError`` here, so nothing above this module sees aiormq types.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractQueue,
    AbstractRobustConnection,
    HeadersType,
)

from shared.errors import TransientError
from shared.topology import Topology, declare_topology

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


class Broker:
    """A connection with a publishing channel (confirms on) and a consuming one."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publish_channel: AbstractChannel,
        consume_channel: AbstractChannel,
        topology: Topology,
    ) -> None:
        self._connection = connection
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
        """A server-named, exclusive queue for request/reply; it dies with the connection."""
        return await self.consume_channel.declare_queue(exclusive=True, auto_delete=True)

    def queue(self, name: str) -> AbstractQueue:
        return self.topology.queues[name]

    def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        if name == "":
            return self._publish_channel.default_exchange
        return self.topology.exchanges[name]

    async def close(self) -> None:
        await self._connection.close()
