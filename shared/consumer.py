"""The one consume wrapper every queue goes through, and its ack policy.

For each message, in order: decode -> bind log context -> time and count ->
handler -> ack policy. The policy:

- success: ack;
- ``TransientError`` (or an unexpected exception): nack and requeue after a
  backoff, until ``max_attempts``; then dead-letter;
- ``PermanentError`` / ``ContractError`` (including undecodable bodies):
  dead-letter at once.

Dead-lettering republishes the original body to ``sidebar.dead-letter`` with
the reason in headers, then acks; if that publish fails the message is
requeued instead, so nothing is lost. Each message produces exactly one summary
log line. Handlers run concurrently, bounded by the channel's prefetch (on a
shared queue).

A private queue (exclusive to its connection) is consumed without acks: it is
deleted with its connection, and unacked messages with it, so an ack would guard
nothing, and costs a frame each way. Such a message cannot be handed back either:
a failure that would be retried is dead-lettered at once
(``x-error-kind: not_redeliverable``), and success is outcome ``handled``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

import structlog
from aio_pika.abc import AbstractIncomingMessage, HeadersType
from aio_pika.exceptions import ChannelInvalidStateError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from shared.broker import Broker, OutgoingMessage, QueueBinding, Subscription
from shared.contracts.errors import describe_validation_error
from shared.errors import ContractError, PermanentError, TransientError
from shared.topology import DEAD_LETTER_EXCHANGE

M = TypeVar("M")

log = structlog.get_logger(__name__)

_MAX_HEADER_TEXT = 2000
_SUCCESS = ("acked", "handled")


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Delivery:
    """Transport facts a handler may need, never the raw driver message."""

    routing_key: str
    attempt: int
    reply_to: str | None
    correlation_id: str | None
    # Delivered before to a consumer that did not settle it (it died, or lost its
    # connection), or requeued after a transient failure.
    redelivered: bool = False
    # Whether this consumer still holds the message: False once the channel it came on
    # closed, when the broker has requeued it for someone else.
    held: Callable[[], bool] = _always


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def backoff_s(self, attempt: int) -> float:
        return float(min(self.backoff_initial_s * 2 ** (attempt - 1), self.backoff_max_s))


class ConsumerMetrics:
    """Per-consumer counters and timings; one instance per service registry."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.messages = Counter(
            f"{service}_messages_total",
            "Messages handled, by consumer and outcome (acked, handled, retried, dead_lettered, dropped).",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            f"{service}_dead_letters_total",
            "Messages sent to the dead-letter queue, by consumer and reason.",
            ["consumer", "reason"],
            registry=registry,
        )
        self.handle_seconds = Histogram(
            f"{service}_message_handle_seconds",
            "Time spent handling one message, by consumer.",
            ["consumer"],
            registry=registry,
        )


Handler = Callable[[M, Delivery], Awaitable[None]]


class Consumer(Generic[M]):
    def __init__(
        self,
        *,
        name: str,
        broker: Broker,
        queue_name: str,
        decode: Callable[[bytes], M],
        handler: Handler[M],
        log_fields: Callable[[M], Mapping[str, str]],
        metrics: ConsumerMetrics,
        prefetch: int | None = None,
        policy: RetryPolicy | None = None,
        private: QueueBinding | None = None,
    ) -> None:
        if (prefetch is None) == (private is None):
            raise ValueError("a shared queue needs a prefetch; a private one is consumed without acks, so none")
        self.name = name
        self._broker = broker
        self._queue_name = queue_name
        self._decode = decode
        self._handler = handler
        self._log_fields = log_fields
        self._metrics = metrics
        self._policy = policy or RetryPolicy()
        self._prefetch = prefetch
        self._private = private
        self._acks = private is None
        self._subscription: Subscription | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subscription = await self._broker.consume(
            self._queue_name, self._on_message, prefetch=self._prefetch, private=self._private
        )

    async def stop(self, drain_timeout_s: float) -> None:
        """Stop taking messages and wait for the ones in flight (SIGTERM drain)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=drain_timeout_s)
        if subscription is not None:
            await subscription.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        attempt = _attempt(message)
        outcome, error = "acked", None
        fields: Mapping[str, str] = {}
        try:
            try:
                decoded = self._decode(message.body)
            except ValidationError as exc:
                raise ContractError(describe_validation_error(exc)) from exc
            except ValueError as exc:
                raise ContractError(str(exc)) from exc
            fields = self._log_fields(decoded)
            with structlog.contextvars.bound_contextvars(**fields):
                await self._handler(decoded, _delivery(message, attempt))
            if self._acks:
                await _settle(message.ack())
            else:
                outcome = "handled"
        except PermanentError as exc:
            kind = "contract" if isinstance(exc, ContractError) else "permanent"
            outcome, error = await self._dead_letter(message, kind, str(exc))
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, TransientError):
                log.exception("consumer.unexpected_error", consumer=self.name, **fields)
            if not self._acks:
                outcome, error = await self._dead_letter(message, "not_redeliverable", detail)
            elif attempt >= self._policy.max_attempts:
                outcome, error = await self._dead_letter(message, "retries_exhausted", detail)
            else:
                await asyncio.sleep(self._policy.backoff_s(attempt))
                await _settle(message.nack(requeue=True))
                outcome, error = "retried", detail
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.messages.labels(self.name, outcome).inc()
            self._metrics.handle_seconds.labels(self.name).observe(elapsed)
            emit = log.info if outcome in _SUCCESS else log.error if outcome == "dropped" else log.warning
            emit(
                "message.handled",
                consumer=self.name,
                outcome=outcome,
                attempt=attempt,
                duration_ms=round(elapsed * 1000, 2),
                error=error,
                **fields,
            )

    async def _dead_letter(self, message: AbstractIncomingMessage, kind: str, reason: str) -> tuple[str, str]:
        headers: HeadersType = {
            **(message.headers or {}),
            "x-consumer": self.name,
            "x-error-kind": kind,
            "x-error": reason[:_MAX_HEADER_TEXT],
            "x-original-exchange": message.exchange or "",
            "x-original-routing-key": message.routing_key or "",
        }
        try:
            await self._broker.publish(
                DEAD_LETTER_EXCHANGE,
                "",
                OutgoingMessage(
                    message.body,
                    message_type=message.type or "unknown",
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    reply_to=message.reply_to,
                    headers=headers,
                ),
                mandatory=False,
            )
        except TransientError:
            if not self._acks:
                return "dropped", f"dead-letter publish failed, and a private queue cannot requeue: {reason}"
            await _settle(message.nack(requeue=True))
            return "retried", f"dead-letter publish failed; requeued: {reason}"
        if self._acks:
            await _settle(message.ack())
        self._metrics.dead_letters.labels(self.name, kind).inc()
        return "dead_lettered", f"{kind}: {reason}"


def _attempt(message: AbstractIncomingMessage) -> int:
    count = (message.headers or {}).get("x-delivery-count", 0)
    return (count if isinstance(count, int) else 0) + 1


def _delivery(message: AbstractIncomingMessage, attempt: int) -> Delivery:
    return Delivery(
        routing_key=message.routing_key or "",
        attempt=attempt,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
        redelivered=bool(message.redelivered) or attempt > 1,
        held=partial(_held, message),
    )


def _held(message: AbstractIncomingMessage) -> bool:
    try:
        message.channel  # noqa: B018 - raises once the channel is closed
    except ChannelInvalidStateError:
        return False
    return True


async def _settle(operation: Awaitable[None]) -> None:
    # After a reconnect the delivery tag is dead; RabbitMQ redelivers the
    # message, and handlers are idempotent, so a failed ack is only logged.
    try:
        await operation
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("consumer.settle_failed", error=f"{type(exc).__name__}: {exc}")
