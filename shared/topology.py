"""Every exchange, queue and routing-key name, and the one place they are declared.

External (fixed contract): the durable topic exchange ``sidebar`` carrying
``conversation.opened`` in and ``sidebar.ready.<business>.<conversation>`` out.
Internal: the direct exchange ``sidebar.internal`` for widget jobs and catalog
change notices, and the fanout ``sidebar.dead-letter`` feeding one dead-letter
queue. The shared queues are durable quorum queues with a delivery limit, so
even a consumer that crashes on a message cannot loop on it forever. Each
orchestrator replica also owns two private queues, exclusive to its connection:
its results (the ``reply_to`` of every job it publishes) and its catalog notices.
"""

from __future__ import annotations

from dataclasses import dataclass

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

EXCHANGE = "sidebar"
INTERNAL_EXCHANGE = "sidebar.internal"
DEAD_LETTER_EXCHANGE = "sidebar.dead-letter"

CONVERSATION_OPENED_KEY = "conversation.opened"
SIDEBAR_READY_PREFIX = "sidebar.ready"
SIDEBAR_WIDGET_PREFIX = "sidebar.widget"
WIDGET_JOB_KEY = "widget.job.v1"
CATALOG_CHANGED_KEY = "catalog.changed.v1"

CONVERSATION_OPENED_QUEUE = "orchestrator.conversation-opened"
WIDGET_JOBS_QUEUE = "executor.widget-jobs"
DEAD_LETTER_QUEUE = "sidebar.dead-letters"

# Redeliveries after which RabbitMQ itself dead-letters a message; the consumer
# policy gives up much earlier, this only catches consumers that die mid-message.
DELIVERY_LIMIT = 20


def sidebar_ready_key(business_id: str, conversation_id: str) -> str:
    return f"{SIDEBAR_READY_PREFIX}.{business_id}.{conversation_id}"


def sidebar_widget_key(business_id: str, conversation_id: str) -> str:
    return f"{SIDEBAR_WIDGET_PREFIX}.{business_id}.{conversation_id}"


def replica_results_queue(replica_id: str) -> str:
    """Where an orchestrator replica's jobs reply: only the replica that owns a run collects it."""
    return f"orchestrator.results.{replica_id}"


def replica_catalog_queue(replica_id: str) -> str:
    return f"orchestrator.catalog.{replica_id}"


def sidebar_ready_pattern(business_id: str = "*", conversation_id: str = "*") -> str:
    """A binding key for subscribers: one business, or one conversation."""
    return f"{SIDEBAR_READY_PREFIX}.{business_id}.{conversation_id}"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    exchange: str
    routing_key: str


QUEUES = (
    QueueSpec(CONVERSATION_OPENED_QUEUE, EXCHANGE, CONVERSATION_OPENED_KEY),
    QueueSpec(WIDGET_JOBS_QUEUE, INTERNAL_EXCHANGE, WIDGET_JOB_KEY),
)

_WORK_QUEUE_ARGUMENTS: FieldTable = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    "x-delivery-limit": DELIVERY_LIMIT,
}


@dataclass(frozen=True)
class Topology:
    exchanges: dict[str, AbstractExchange]
    queues: dict[str, AbstractQueue]


async def declare_topology(channel: AbstractChannel) -> Topology:
    """Declare everything; idempotent, and every service calls it at start-up."""
    exchanges = {
        EXCHANGE: await channel.declare_exchange(EXCHANGE, ExchangeType.TOPIC, durable=True),
        INTERNAL_EXCHANGE: await channel.declare_exchange(INTERNAL_EXCHANGE, ExchangeType.DIRECT, durable=True),
        DEAD_LETTER_EXCHANGE: await channel.declare_exchange(DEAD_LETTER_EXCHANGE, ExchangeType.FANOUT, durable=True),
    }
    dead_letters = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await dead_letters.bind(exchanges[DEAD_LETTER_EXCHANGE], routing_key="")
    queues = {DEAD_LETTER_QUEUE: dead_letters}
    for spec in QUEUES:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=dict(_WORK_QUEUE_ARGUMENTS))
        await queue.bind(exchanges[spec.exchange], routing_key=spec.routing_key)
        queues[spec.name] = queue
    return Topology(exchanges=exchanges, queues=queues)
