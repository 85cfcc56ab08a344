"""Conversations: what an agent opens, and the root of a widget's context.

A public id (the number a help desk shows) is unique per business. FerretDB's
unique indexes cannot be relied on, so the upsert checks with a lookup first;
two concurrent writers of the same public id can still both win that race.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.context import load_context
from shared.contracts.events import EventContext
from shared.ids import scoped_key
from shared.mongo import CONVERSATIONS, Document, mongo_errors
from store.errors import Conflict
from store.repositories import owned_by, stored_now


@dataclass(frozen=True)
class ConversationFields:
    public_id: str | None = None
    customer_id: str | None = None
    channel: str | None = None
    subject: str | None = None
    status: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Conversation:
    business_id: str
    conversation_id: str
    fields: ConversationFields
    created_at: datetime
    updated_at: datetime


def _conversation(doc: Document) -> Conversation:
    return Conversation(
        business_id=doc["business_id"],
        conversation_id=doc["conversation_id"],
        fields=ConversationFields(
            public_id=doc.get("public_id"),
            customer_id=doc.get("customer_id"),
            channel=doc.get("channel"),
            subject=doc.get("subject"),
            status=doc.get("status"),
            attributes=doc.get("attributes") or {},
        ),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


class ConversationRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._conversations = db[CONVERSATIONS]

    async def ensure_indexes(self) -> None:
        with mongo_errors("create conversation indexes"):
            await self._conversations.create_index([("business_id", 1), ("public_id", 1)])
            await self._conversations.create_index([("business_id", 1), ("created_at", DESCENDING)])

    async def upsert(
        self, business_id: str, conversation_id: str, fields: ConversationFields
    ) -> tuple[Conversation, bool]:
        """Replace the conversation's fields, keeping ``created_at``; the flag says whether it was created."""
        if fields.public_id is not None:
            await self._check_public_id_free(business_id, conversation_id, fields.public_id)
        key = scoped_key(business_id, conversation_id)
        now = stored_now()
        update = {
            "$set": {
                "public_id": fields.public_id,
                "customer_id": fields.customer_id,
                "channel": fields.channel,
                "subject": fields.subject,
                "status": fields.status,
                "attributes": fields.attributes,
                "updated_at": now,
            },
            "$setOnInsert": {"business_id": business_id, "conversation_id": conversation_id, "created_at": now},
        }
        query = {"_id": key}
        with mongo_errors("upsert conversation"):
            try:
                result = await self._conversations.update_one(query, update, upsert=True)
            except DuplicateKeyError:
                # A concurrent first write inserted it; now it exists, the retry updates it.
                result = await self._conversations.update_one(query, update, upsert=True)
            doc = owned_by(business_id, await self._conversations.find_one(query))
        if doc is None:
            raise Conflict(f"conversation {conversation_id!r} was deleted while it was being written; retry")
        return _conversation(doc), result.upserted_id is not None

    async def _check_public_id_free(self, business_id: str, conversation_id: str, public_id: str) -> None:
        with mongo_errors("check public id"):
            other = await self._conversations.find_one(
                {"business_id": business_id, "public_id": public_id, "conversation_id": {"$ne": conversation_id}},
                {"conversation_id": 1},
            )
        if other is not None:
            raise Conflict(f"public id {public_id!r} is already used by conversation {other['conversation_id']!r}")

    async def get(self, business_id: str, conversation_id: str) -> Conversation | None:
        with mongo_errors("read conversation"):
            doc = owned_by(
                business_id, await self._conversations.find_one({"_id": scoped_key(business_id, conversation_id)})
            )
        return None if doc is None else _conversation(doc)

    async def by_public_id(self, business_id: str, public_id: str) -> Conversation | None:
        with mongo_errors("read conversation by public id"):
            doc = await self._conversations.find_one({"business_id": business_id, "public_id": public_id})
        return None if doc is None else _conversation(doc)

    async def newest(self, business_id: str, limit: int) -> list[Conversation]:
        with mongo_errors("list conversations"):
            docs = (
                await self._conversations.find({"business_id": business_id})
                .sort([("created_at", DESCENDING), ("conversation_id", 1)])
                .limit(limit)
                .to_list()
            )
        return [_conversation(doc) for doc in docs]

    async def context(self, business_id: str, conversation_id: str) -> EventContext | None:
        """The context a live run of this conversation would give a widget."""
        return await load_context(self._db, business_id, conversation_id)
