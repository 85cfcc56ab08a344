"""Businesses and their API keys (stored only as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.mongo import API_KEYS, BUSINESSES, Document, mongo_errors
from store.errors import Conflict
from store.repositories import stored_now

API_KEY_PREFIX = "sk_"


@dataclass(frozen=True)
class Business:
    business_id: str
    name: str
    created_at: datetime


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _business(doc: Document) -> Business:
    return Business(business_id=doc["business_id"], name=doc["name"], created_at=doc["created_at"])


class BusinessRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._businesses = db[BUSINESSES]
        self._keys = db[API_KEYS]

    async def ensure_indexes(self) -> None:
        with mongo_errors("create api key indexes"):
            await self._keys.create_index("business_id")

    async def create(self, business_id: str, name: str) -> Business:
        business = Business(business_id=business_id, name=name, created_at=stored_now())
        doc = {"_id": business_id, "business_id": business_id, "name": name, "created_at": business.created_at}
        with mongo_errors("create business"):
            try:
                await self._businesses.insert_one(doc)
            except DuplicateKeyError as exc:
                raise Conflict(f"business {business_id!r} already exists") from exc
        return business

    async def get(self, business_id: str) -> Business | None:
        with mongo_errors("read business"):
            doc = await self._businesses.find_one({"_id": business_id})
        return None if doc is None else _business(doc)

    async def issue_key(self, business_id: str) -> str:
        """Store a new key's hash and return the plaintext; it is never retrievable again."""
        key = new_api_key()
        doc = {"_id": hash_api_key(key), "business_id": business_id, "created_at": stored_now()}
        with mongo_errors("issue api key"):
            await self._keys.insert_one(doc)
        return key

    async def business_for_key(self, key: str) -> str | None:
        with mongo_errors("look up api key"):
            doc = await self._keys.find_one({"_id": hash_api_key(key)})
        return None if doc is None else str(doc["business_id"])
