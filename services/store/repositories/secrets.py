"""Widget secrets at rest: only ever sealed (shared/secrets.py), never the plaintext.

The orchestrator reads these documents directly (a business's ``name`` →
``sealed``), so their shape is a contract: ``{_id, business_id, name, sealed,
updated_at}``, with ``_id`` = ``scoped_key(business_id, name)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from shared.ids import scoped_key
from shared.mongo import SECRETS, Document, mongo_errors
from store.repositories import stored_now


@dataclass(frozen=True)
class SecretEntry:
    """What may be shown of a secret: its name and when it was last set."""

    name: str
    updated_at: datetime


class SecretRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._secrets = db[SECRETS]

    async def ensure_indexes(self) -> None:
        with mongo_errors("create secret indexes"):
            await self._secrets.create_index([("business_id", 1)])

    async def set(self, business_id: str, name: str, sealed: str) -> bool:
        """Create or replace the secret; True when it was created."""
        doc = {"business_id": business_id, "name": name, "sealed": sealed, "updated_at": stored_now()}
        with mongo_errors("set secret"):
            result = await self._secrets.replace_one({"_id": scoped_key(business_id, name)}, doc, upsert=True)
        return result.upserted_id is not None

    async def entries(self, business_id: str) -> list[SecretEntry]:
        with mongo_errors("list secrets"):
            docs = await self._secrets.find({"business_id": business_id}, {"name": 1, "updated_at": 1}).to_list()
        return sorted((SecretEntry(doc["name"], doc["updated_at"]) for doc in docs), key=lambda e: e.name)

    async def sealed(self, business_id: str) -> dict[str, str]:
        """The business's secrets by name, still sealed: what a widget job carries."""
        with mongo_errors("load secrets"):
            docs = await self._secrets.find({"business_id": business_id}, {"name": 1, "sealed": 1}).to_list()
        return {doc["name"]: doc["sealed"] for doc in docs}

    async def delete(self, business_id: str, name: str) -> bool:
        with mongo_errors("delete secret"):
            result = await self._secrets.delete_one({"_id": scoped_key(business_id, name)})
        return result.deleted_count == 1
