"""The widget context: how stored business, conversation and customer documents
become the ``context`` a widget receives. The orchestrator (live runs) and the
store (test runs) both build it here, so a test run sees exactly what a live run sees.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared.contracts.events import EventContext
from shared.ids import scoped_key
from shared.mongo import BUSINESSES, CONVERSATIONS, CUSTOMERS, Document, mongo_errors

_CONVERSATION_FIELDS = ("public_id", "channel", "subject", "status", "customer_id", "created_at", "attributes")
_CUSTOMER_FIELDS = ("email", "name", "phone", "attributes")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def build_context(business: Document, conversation: Document, customer: Document | None) -> EventContext:
    return EventContext(
        conversation={
            "id": conversation["conversation_id"],
            **{k: _plain(conversation.get(k)) for k in _CONVERSATION_FIELDS},
        },
        customer=None
        if customer is None
        else {"id": customer["customer_id"], **{k: _plain(customer.get(k)) for k in _CUSTOMER_FIELDS}},
        business={"id": business["business_id"], "name": business.get("name")},
    )


async def load_context(db: AsyncDatabase[Document], business_id: str, conversation_id: str) -> EventContext | None:
    """The stored context of a conversation, or None when business or conversation is unknown."""
    with mongo_errors("load context"):
        business = await db[BUSINESSES].find_one({"_id": business_id})
    if business is None:
        return None
    return await load_conversation_context(db, business, conversation_id)


async def load_conversation_context(
    db: AsyncDatabase[Document], business: Document, conversation_id: str
) -> EventContext | None:
    """The context of a conversation of a business already read: two reads by ``_id`` at most."""
    business_id = business["business_id"]
    with mongo_errors("load context"):
        conversation = await db[CONVERSATIONS].find_one({"_id": scoped_key(business_id, conversation_id)})
        if conversation is None:
            return None
        customer = None
        if conversation.get("customer_id"):
            customer = await db[CUSTOMERS].find_one({"_id": scoped_key(business_id, conversation["customer_id"])})
    return build_context(business, conversation, customer)
