"""Widgets: a business's sidebar scripts, with their order, timeout and on/off switch.

The orchestrator reads these documents directly (active ones, by position), so
their shape is a contract: ``{_id, business_id, widget_id, name, code, active,
position, timeout_s, created_at, updated_at}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.ids import scoped_key
from shared.mongo import WIDGETS, Document, mongo_errors
from store.errors import Conflict
from store.repositories import owned_by, stored_now


@dataclass(frozen=True)
class WidgetDraft:
    name: str
    code: str
    active: bool
    position: int
    timeout_s: float


class WidgetChanges(TypedDict, total=False):
    name: str
    code: str
    active: bool
    position: int
    timeout_s: float


@dataclass(frozen=True)
class Widget:
    business_id: str
    widget_id: str
    name: str
    code: str
    active: bool
    position: int
    timeout_s: float
    created_at: datetime
    updated_at: datetime


def _widget(doc: Document) -> Widget:
    return Widget(
        business_id=doc["business_id"],
        widget_id=doc["widget_id"],
        name=doc["name"],
        code=doc["code"],
        active=bool(doc["active"]),
        position=int(doc["position"]),
        timeout_s=float(doc["timeout_s"]),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


class WidgetRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._widgets = db[WIDGETS]

    async def ensure_indexes(self) -> None:
        with mongo_errors("create widget indexes"):
            await self._widgets.create_index([("business_id", 1), ("active", 1), ("position", 1)])

    async def create(self, business_id: str, widget_id: str, draft: WidgetDraft) -> Widget:
        now = stored_now()
        widget = Widget(business_id, widget_id, created_at=now, updated_at=now, **vars(draft))
        doc = {"_id": scoped_key(business_id, widget_id), **vars(widget)}
        with mongo_errors("create widget"):
            try:
                await self._widgets.insert_one(doc)
            except DuplicateKeyError as exc:
                raise Conflict(f"widget {widget_id!r} already exists") from exc
        return widget

    async def get(self, business_id: str, widget_id: str) -> Widget | None:
        with mongo_errors("read widget"):
            doc = owned_by(business_id, await self._widgets.find_one({"_id": scoped_key(business_id, widget_id)}))
        return None if doc is None else _widget(doc)

    async def in_position_order(self, business_id: str) -> list[Widget]:
        with mongo_errors("list widgets"):
            docs = (
                await self._widgets.find({"business_id": business_id})
                .sort([("position", 1), ("widget_id", 1)])
                .to_list()
            )
        return [_widget(doc) for doc in docs]

    async def update(self, business_id: str, widget_id: str, changes: WidgetChanges) -> Widget | None:
        with mongo_errors("update widget"):
            updated = await self._widgets.find_one_and_update(
                {"_id": scoped_key(business_id, widget_id)},
                {"$set": {**changes, "updated_at": stored_now()}},
                return_document=ReturnDocument.AFTER,
            )
        doc = owned_by(business_id, updated)
        return None if doc is None else _widget(doc)

    async def delete(self, business_id: str, widget_id: str) -> bool:
        with mongo_errors("delete widget"):
            result = await self._widgets.delete_one({"_id": scoped_key(business_id, widget_id)})
        return result.deleted_count == 1
