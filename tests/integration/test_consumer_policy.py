"""The consume wrapper on a real broker: ack, bounded retry, and dead-lettering with a reason."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import pytest
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import CollectorRegistry

from shared.broker import Broker, OutgoingMessage, QueueBinding
from shared.consumer import Consumer, ConsumerMetrics, Delivery, Handler, RetryPolicy
from shared.errors import PermanentError, TransientError
from shared.topology import DEAD_LETTER_QUEUE, INTERNAL_EXCHANGE, WIDGET_JOB_KEY, WIDGET_JOBS_QUEUE
from tests.infra import Infra


@dataclass
class Recorder:
    """A handler whose behaviour per message is chosen by the message's ``mode``."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    done: dict[str, asyncio.Event] = field(default_factory=dict)

    def event(self, key: str) -> asyncio.Event:
        return self.done.setdefault(key, asyncio.Event())

    async def __call__(self, message: dict[str, str], delivery: Delivery) -> None:
        self.seen.append((message["id"], delivery.attempt))
        mode = message["mode"]
        if mode == "flaky" and delivery.attempt < 3:
            raise TransientError("database unavailable")
        if mode == "always-transient":
            raise TransientError("still down")
        if mode == "permanent":
            raise PermanentError("cannot ever work")
        if mode == "bug":
            raise KeyError("unexpected")
        self.event(message["id"]).set()


def _decode(body: bytes) -> dict[str, str]:
    value = json.loads(body)
    if not isinstance(value, dict) or "id" not in value:
        raise ValueError("expected an object with an id")
    return value


@pytest.fixture
async def consumer(broker: Broker) -> AsyncIterator[tuple[Consumer[dict[str, str]], Recorder]]:
    await broker.queue(WIDGET_JOBS_QUEUE).purge()
    await broker.queue(DEAD_LETTER_QUEUE).purge()
    recorder = Recorder()
    value: Consumer[dict[str, str]] = Consumer(
        name="test",
        broker=broker,
        queue_name=WIDGET_JOBS_QUEUE,
        decode=_decode,
        handler=recorder,
        log_fields=lambda m: {"event_id": m["id"]},
        metrics=ConsumerMetrics(CollectorRegistry(), "test"),
        prefetch=10,
        policy=RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05),
    )
    await value.start()
    yield value, recorder
    await value.stop(5)


async def _publish(broker: Broker, body: bytes) -> None:
    await broker.publish(INTERNAL_EXCHANGE, WIDGET_JOB_KEY, OutgoingMessage(body, message_type="test"))


async def _next_dead_letter(broker: Broker) -> AbstractIncomingMessage:
    queue = broker.queue(DEAD_LETTER_QUEUE)
    async with queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            return message
    raise AssertionError("dead-letter iterator ended")


async def test_a_good_message_is_handled_and_acked(
    consumer: tuple[Consumer[dict[str, str]], Recorder], broker: Broker
) -> None:
    _, recorder = consumer
    key = uuid.uuid4().hex
    await _publish(broker, json.dumps({"id": key, "mode": "ok"}).encode())
    await asyncio.wait_for(recorder.event(key).wait(), 10)
    assert recorder.seen == [(key, 1)]


async def test_transient_failures_are_retried_until_success(
    consumer: tuple[Consumer[dict[str, str]], Recorder], broker: Broker
) -> None:
    _, recorder = consumer
    key = uuid.uuid4().hex
    await _publish(broker, json.dumps({"id": key, "mode": "flaky"}).encode())
    await asyncio.wait_for(recorder.event(key).wait(), 10)
    assert recorder.seen == [(key, 1), (key, 2), (key, 3)]


async def test_undecodable_messages_are_dead_lettered_with_the_reason(
    consumer: tuple[Consumer[dict[str, str]], Recorder], broker: Broker
) -> None:
    await _publish(broker, b"\x00not json")
    dead = await asyncio.wait_for(_next_dead_letter(broker), 10)
    assert dead.body == b"\x00not json"
    assert dead.headers["x-error-kind"] == "contract"
    assert dead.headers["x-consumer"] == "test"
    assert dead.headers["x-original-routing-key"] == WIDGET_JOB_KEY
    _, recorder = consumer
    key = uuid.uuid4().hex
    await _publish(broker, json.dumps({"id": key, "mode": "ok"}).encode())
    await asyncio.wait_for(recorder.event(key).wait(), 10)


async def test_permanent_errors_are_dead_lettered_at_once(
    consumer: tuple[Consumer[dict[str, str]], Recorder], broker: Broker
) -> None:
    _, recorder = consumer
    key = uuid.uuid4().hex
    await _publish(broker, json.dumps({"id": key, "mode": "permanent"}).encode())
    dead = await asyncio.wait_for(_next_dead_letter(broker), 10)
    assert dead.headers["x-error-kind"] == "permanent"
    assert "cannot ever work" in str(dead.headers["x-error"])
    assert recorder.seen == [(key, 1)]


@pytest.mark.parametrize("mode", ["always-transient", "bug"])
async def test_retries_are_bounded_then_dead_lettered(
    consumer: tuple[Consumer[dict[str, str]], Recorder], broker: Broker, mode: str
) -> None:
    _, recorder = consumer
    key = uuid.uuid4().hex
    await _publish(broker, json.dumps({"id": key, "mode": mode}).encode())
    dead = await asyncio.wait_for(_next_dead_letter(broker), 10)
    assert dead.headers["x-error-kind"] == "retries_exhausted"
    assert recorder.seen == [(key, 1), (key, 2), (key, 3)]


@dataclass
class Held:
    """A handler that records each message's id and holds it until ``release`` is set."""

    started: list[str] = field(default_factory=list)
    finished: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, message: dict[str, str], delivery: Delivery) -> None:
        self.started.append(message["id"])
        self._changed.set()
        await self.release.wait()
        self.finished += 1
        self._changed.set()

    async def until(self, *, started: int = 0, finished: int = 0) -> None:
        async with asyncio.timeout(10):
            while len(self.started) < started or self.finished < finished:
                self._changed.clear()
                await self._changed.wait()


def _consumer(
    broker: Broker,
    handler: Handler[dict[str, str]],
    *,
    prefetch: int | None = None,
    private: str | None = None,
    registry: CollectorRegistry | None = None,
) -> Consumer[dict[str, str]]:
    """On the jobs queue with ``prefetch``, or on a private queue named ``private`` (no acks)."""
    return Consumer(
        name="private" if private else "blocking",
        broker=broker,
        queue_name=private or WIDGET_JOBS_QUEUE,
        private=QueueBinding(INTERNAL_EXCHANGE, private) if private else None,
        decode=_decode,
        handler=handler,
        log_fields=lambda m: {"event_id": m["id"]},
        metrics=ConsumerMetrics(registry or CollectorRegistry(), "test"),
        prefetch=prefetch,
    )


async def test_handlers_run_concurrently_up_to_the_prefetch(broker: Broker) -> None:
    await broker.queue(WIDGET_JOBS_QUEUE).purge()
    held = Held()
    value = _consumer(broker, held, prefetch=10)
    await value.start()
    for n in range(3):
        await _publish(broker, json.dumps({"id": str(n), "mode": "ok"}).encode())
    await held.until(started=3)
    held.release.set()
    await value.stop(5)
    assert sorted(held.started) == ["0", "1", "2"]


async def test_the_prefetch_bounds_unacked_deliveries_on_the_consumers_own_channel(broker: Broker) -> None:
    """With prefetch 2 and five messages, two handlers run and the broker still holds three."""
    await broker.queue(WIDGET_JOBS_QUEUE).purge()
    held = Held()
    value = _consumer(broker, held, prefetch=2)
    for n in range(5):
        await _publish(broker, json.dumps({"id": str(n), "mode": "ok"}).encode())
    await value.start()
    try:
        await held.until(started=2)
        channel = await broker.connection.channel()
        declared = await channel.declare_queue(WIDGET_JOBS_QUEUE, passive=True)
        await channel.close()
        assert declared.declaration_result.message_count == 3
        assert len(held.started) == 2
        held.release.set()
        await held.until(finished=5)
    finally:
        held.release.set()
        await value.stop(5)
    assert sorted(held.started) == ["0", "1", "2", "3", "4"]


def _ready_and_unacked(vhost: str, queue: str) -> tuple[int, int]:
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "messages_ready",
         "messages_unacknowledged"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    for line in listing.splitlines():
        name, ready, unacked = line.split("\t")
        if name == queue:
            return int(ready), int(unacked)
    raise AssertionError(f"queue {queue} not found in {listing!r}")


async def test_a_private_queue_is_consumed_without_acks(broker: Broker, infra: Infra) -> None:
    """No prefetch bounds it and the broker keeps nothing back: with five handlers blocked,
    all five messages are out of the queue, none ready, none waiting for an ack (with acks,
    the broker would count five unacknowledged)."""
    name = f"test.private.{uuid.uuid4().hex}"
    held, registry = Held(), CollectorRegistry()
    value = _consumer(broker, held, private=name, registry=registry)
    await value.start()
    try:
        for n in range(5):
            await broker.publish(INTERNAL_EXCHANGE, name, OutgoingMessage(json.dumps({"id": str(n)}).encode(), "test"))
        await held.until(started=5)
        vhost = unquote(urlsplit(infra.rabbitmq_url).path[1:])
        assert await asyncio.to_thread(_ready_and_unacked, vhost, name) == (0, 0)
    finally:
        held.release.set()
        await value.stop(5)
    assert sorted(held.started) == ["0", "1", "2", "3", "4"]
    assert registry.get_sample_value("test_messages_total", {"consumer": "private", "outcome": "handled"}) == 5


@pytest.mark.parametrize("mode", ["always-transient", "bug"])
async def test_a_failure_on_a_private_queue_is_dead_lettered_at_once(broker: Broker, mode: str) -> None:
    """It cannot be handed back for a retry: one attempt, then the dead-letter queue."""
    await broker.queue(DEAD_LETTER_QUEUE).purge()
    name = f"test.private.{uuid.uuid4().hex}"
    recorder = Recorder()
    value = _consumer(broker, recorder, private=name)
    await value.start()
    key = uuid.uuid4().hex
    try:
        body = json.dumps({"id": key, "mode": mode}).encode()
        await broker.publish(INTERNAL_EXCHANGE, name, OutgoingMessage(body, "test"))
        dead = await asyncio.wait_for(_next_dead_letter(broker), 10)
    finally:
        await value.stop(5)
    assert dead.headers["x-error-kind"] == "not_redeliverable"
    assert ("still down" if mode == "always-transient" else "KeyError") in str(dead.headers["x-error"])
    assert recorder.seen == [(key, 1)]


def test_a_shared_queue_needs_a_prefetch_and_a_private_one_takes_none(broker: Broker) -> None:
    common = {
        "name": "x",
        "broker": broker,
        "queue_name": "q",
        "decode": _decode,
        "handler": Recorder(),
        "log_fields": lambda m: {},
        "metrics": ConsumerMetrics(CollectorRegistry(), "test"),
    }
    with pytest.raises(ValueError, match="needs a prefetch"):
        Consumer(**common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without acks"):
        Consumer(**common, prefetch=10, private=QueueBinding(INTERNAL_EXCHANGE, "q"))  # type: ignore[arg-type]
