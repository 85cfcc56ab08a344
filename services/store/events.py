"""What the store publishes: ``conversation.opened`` (its half of the external event
contract) and ``catalog.changed`` (internal: orchestrators drop their cached catalog).

The opened event carries no context; the orchestrator loads it from the database,
so the stored conversation is the single source of truth.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import structlog

from shared.broker import Broker, OutgoingMessage
from shared.contracts.catalog import CATALOG_CHANGED, CatalogChanged
from shared.contracts.events import CONVERSATION_OPENED, SCHEMA_VERSION, ConversationOpened
from shared.errors import TransientError
from shared.topology import CATALOG_CHANGED_KEY, CONVERSATION_OPENED_KEY, EXCHANGE, INTERNAL_EXCHANGE
from store.metrics import StoreMetrics

log = structlog.get_logger(__name__)


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

    async def catalog_changed(self, business_id: str, what: Literal["widgets", "secrets"]) -> None:
        """Tell every orchestrator to drop its cached catalog of the business. Best effort: the
        write is stored already, and a missed notice only lasts until the cache's TTL."""
        notice = CatalogChanged(business_id=business_id, what=what)
        message = OutgoingMessage(notice.model_dump_json().encode(), message_type=CATALOG_CHANGED)
        try:
            await self._broker.publish(INTERNAL_EXCHANGE, CATALOG_CHANGED_KEY, message, mandatory=False)
        except TransientError as exc:
            log.warning("catalog.notice_failed", what=what, error=str(exc))
            return
        self._metrics.events_published.labels(CATALOG_CHANGED).inc()
