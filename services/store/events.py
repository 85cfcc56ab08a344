"""Publishing ``conversation.opened``: the store's half of the external event contract.

The event carries no context; the orchestrator loads it from the database, so
the stored conversation is the single source of truth.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog

from shared.broker import Broker, OutgoingMessage
from shared.contracts.events import CONVERSATION_OPENED, SCHEMA_VERSION, ConversationOpened
from shared.topology import CONVERSATION_OPENED_KEY, EXCHANGE
from store.metrics import StoreMetrics


class EventPublisher:
    def __init__(self, broker: Broker, metrics: StoreMetrics) -> None:
        self._broker = broker
        self._metrics = metrics

    async def conversation_opened(
        self, business_id: str, conversation_id: str, agent_id: str | None = None
    ) -> ConversationOpened:
        """Publish and wait for the broker's confirm; raises ``TransientError`` if it does not come."""
        event = ConversationOpened(
            event_id=uuid.uuid4().hex,
            business_id=business_id,
            conversation_id=conversation_id,
            occurred_at=datetime.now(UTC),
            agent_id=agent_id,
        )
        message = OutgoingMessage(
            event.model_dump_json(exclude_none=True).encode(),
            message_type=CONVERSATION_OPENED,
            message_id=event.event_id,
            headers={"schema_version": SCHEMA_VERSION},
        )
        await self._broker.publish(EXCHANGE, CONVERSATION_OPENED_KEY, message)
        self._metrics.events_published.labels(CONVERSATION_OPENED).inc()
        structlog.contextvars.bind_contextvars(event_id=event.event_id)
        return event
