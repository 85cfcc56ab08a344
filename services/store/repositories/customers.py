"""Customers: the people conversations are with, part of every widget's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.ids import scoped_key
from shared.mongo import CUSTOMERS, Document, mongo_errors
from store.repositories import owned_by, stored_now


@dataclass(frozen=True)
class CustomerFields:
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Customer:
    business_id: str
    customer_id: str
    fields: CustomerFields
    updated_at: datetime


def _customer(doc: Document) -> Customer:
    return Customer(
        business_id=doc["business_id"],
        customer_id=doc["customer_id"],
        fields=CustomerFields(
            email=doc.get("email"),
            name=doc.get("name"),
            phone=doc.get("phone"),
            attributes=doc.get("attributes") or {},
        ),
        updated_at=doc["updated_at"],
    )


class CustomerRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._customers = db[CUSTOMERS]

    async def ensure_indexes(self) -> None:
        with mongo_errors("create customer indexes"):
            await self._customers.create_index("business_id")

    async def upsert(self, business_id: str, customer_id: str, fields: CustomerFields) -> tuple[Customer, bool]:
        """Replace the customer (PUT semantics); the flag says whether it was created."""
        customer = Customer(business_id, customer_id, fields, stored_now())
        key = scoped_key(business_id, customer_id)
        doc = {
            "_id": key,
            "business_id": business_id,
            "customer_id": customer_id,
            "email": fields.email,
            "name": fields.name,
            "phone": fields.phone,
            "attributes": fields.attributes,
            "updated_at": customer.updated_at,
        }
        query = {"_id": key}
        with mongo_errors("upsert customer"):
            try:
                result = await self._customers.replace_one(query, doc, upsert=True)
            except DuplicateKeyError:
                # A concurrent first write inserted it; now it exists, the retry replaces it.
                result = await self._customers.replace_one(query, doc, upsert=True)
        return customer, result.upserted_id is not None

    async def get(self, business_id: str, customer_id: str) -> Customer | None:
        with mongo_errors("read customer"):
            doc = owned_by(business_id, await self._customers.find_one({"_id": scoped_key(business_id, customer_id)}))
        return None if doc is None else _customer(doc)
