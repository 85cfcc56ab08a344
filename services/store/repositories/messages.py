"""Conversation messages: what a customer wrote in the chat widget (and, later, agents' replies).

Documents are ``{_id: <business_id>:<message_id>, business_id, conversation_id,
message_id, author, content, image_url, created_at}``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared.ids import scoped_key
from shared.mongo import MESSAGES, Document, mongo_errors
from store.repositories import stored_now

Author = Literal["customer", "agent"]

MAX_LISTED = 500


@dataclass(frozen=True)
class Message:
    business_id: str
    conversation_id: str
    message_id: str
    author: Author
    content: str
    image_url: str | None
    created_at: datetime


def _message(doc: Document) -> Message:
    return Message(
        business_id=doc["business_id"],
        conversation_id=doc["conversation_id"],
        message_id=doc["message_id"],
        author=doc["author"],
        content=doc["content"],
        image_url=doc.get("image_url"),
        created_at=doc["created_at"],
    )


class MessageRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._messages = db[MESSAGES]
        self._last_created_at: datetime | None = None

    async def ensure_indexes(self) -> None:
        with mongo_errors("create message indexes"):
            await self._messages.create_index(
                [("business_id", ASCENDING), ("conversation_id", ASCENDING), ("created_at", ASCENDING)]
            )

    async def add(
        self, business_id: str, conversation_id: str, *, author: Author, content: str, image_url: str | None
    ) -> Message:
        message = Message(
            business_id=business_id,
            conversation_id=conversation_id,
            message_id=uuid.uuid4().hex,
            author=author,
            content=content,
            image_url=image_url,
            created_at=self._next_created_at(),
        )
        with mongo_errors("add message"):
            await self._messages.insert_one({"_id": scoped_key(business_id, message.message_id), **vars(message)})
        return message

    async def in_conversation(self, business_id: str, conversation_id: str, limit: int = MAX_LISTED) -> list[Message]:
        """The conversation's latest ``limit`` messages, oldest first."""
        # Not by _id, so FerretDB's SQLite backend scans the collection: fine at this scale,
        # and MongoDB uses the index.
        query = {"business_id": business_id, "conversation_id": conversation_id}
        with mongo_errors("list messages"):
            docs = (
                await self._messages.find(query)
                .sort([("created_at", DESCENDING), ("message_id", DESCENDING)])
                .limit(min(limit, MAX_LISTED))
                .to_list()
            )
        return [_message(doc) for doc in reversed(docs)]

    def _next_created_at(self) -> datetime:
        # Stored times have millisecond precision; never repeating one within a process keeps
        # messages sent one after another in the order they were written.
        now = stored_now()
        if self._last_created_at is not None and now <= self._last_created_at:
            now = self._last_created_at + timedelta(milliseconds=1)
        self._last_created_at = now
        return now
