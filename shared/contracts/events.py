"""The external event contracts on the ``sidebar`` exchange.

These shapes are fixed: clients outside this repository publish
``conversation.opened`` and subscribe to ``sidebar.ready.<business>.<conversation>``.
The message type and schema version travel in the AMQP ``type`` property and a
``schema_version`` header, so the JSON bodies stay exactly as documented.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from pydantic_core import PydanticCustomError

from shared.contracts.widget_output import WidgetOutput
from shared.ids import Id

CONVERSATION_OPENED = "conversation.opened"
SIDEBAR_READY = "sidebar.ready"
SIDEBAR_WIDGET = "sidebar.widget"
SCHEMA_VERSION = 1

# ``expired``: not run at all, because its event or job was older than admission allows
# when taken (docs/operations.md, "Admission control").
WidgetStatus = Literal["ok", "error", "timeout", "expired"]


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventContext(_Contract):
    """What a widget sees as ``context``: the conversation, its customer and the business."""

    conversation: dict[str, Any]
    customer: dict[str, Any] | None
    business: dict[str, Any]


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|z|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise PydanticCustomError(
            "rfc3339", "expected an RFC 3339 timestamp with a timezone, like 2026-01-31T09:30:00Z"
        )
    return value


class ConversationOpened(_Contract):
    """Inbound, routing key ``conversation.opened``: an agent opened a conversation."""

    event_id: Id
    business_id: Id
    conversation_id: Id
    occurred_at: Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
    agent_id: Id | None = None
    context: EventContext | None = None

    def log_fields(self) -> dict[str, str]:
        return {"event_id": self.event_id, "business_id": self.business_id, "conversation_id": self.conversation_id}


class WidgetError(_Contract):
    type: str
    message: str


class SidebarWidget(_Contract):
    widget_id: Id
    name: str
    position: int
    status: WidgetStatus
    duration_ms: int = Field(ge=0)
    data: WidgetOutput
    error: WidgetError | None


class SidebarReady(_Contract):
    """Outbound, routing key ``sidebar.ready.<business_id>.<conversation_id>``."""

    event_id: str
    business_id: Id
    conversation_id: Id
    trigger_event_id: Id
    generated_at: datetime
    widgets: list[SidebarWidget]


class SidebarWidgetReady(_Contract):
    """Outbound, routing key ``sidebar.widget.<business_id>.<conversation_id>``: one widget's
    card as soon as its result is recorded, before the whole sidebar is assembled.
    Progressive and best effort; ``sidebar.ready`` remains the complete, authoritative sidebar."""

    event_id: str
    business_id: Id
    conversation_id: Id
    trigger_event_id: Id
    widget: SidebarWidget


decode_conversation_opened = TypeAdapter(ConversationOpened).validate_json
decode_sidebar_ready = TypeAdapter(SidebarReady).validate_json
decode_sidebar_widget_ready = TypeAdapter(SidebarWidgetReady).validate_json
