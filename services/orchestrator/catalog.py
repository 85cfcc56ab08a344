"""Where the orchestrator reads what to run: a business's active widgets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.runs import WidgetDefinition, WidgetSnapshot
from shared.contracts.jobs import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S
from shared.mongo import SECRETS, WIDGETS, Document, mongo_errors


class WidgetCatalog(Protocol):
    async def active_widgets(self, business_id: str) -> list[WidgetDefinition]: ...

    async def sealed_secrets(self, business_id: str) -> dict[str, str]:
        """The business's secrets by name, still sealed; only executors open them."""

    async def widgets_by_id(self, business_id: str, widget_ids: Iterable[str]) -> dict[str, WidgetDefinition]: ...


def _definition(doc: Document) -> WidgetDefinition:
    timeout = float(doc.get("timeout_s") or DEFAULT_TIMEOUT_S)
    return WidgetDefinition(
        snapshot=WidgetSnapshot(
            widget_id=doc["widget_id"],
            name=doc["name"],
            position=int(doc.get("position", 0)),
            timeout_s=min(timeout, MAX_TIMEOUT_S),
        ),
        code=doc["code"],
    )


class MongoWidgetCatalog:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._widgets = db[WIDGETS]
        self._secrets = db[SECRETS]

    async def sealed_secrets(self, business_id: str) -> dict[str, str]:
        with mongo_errors("load secrets"):
            docs = await self._secrets.find({"business_id": business_id}, {"name": 1, "sealed": 1}).to_list()
        return {doc["name"]: doc["sealed"] for doc in docs}

    async def active_widgets(self, business_id: str) -> list[WidgetDefinition]:
        with mongo_errors("load active widgets"):
            docs = await self._widgets.find({"business_id": business_id, "active": True}).to_list()
        definitions = [_definition(doc) for doc in docs]
        return sorted(definitions, key=lambda d: (d.snapshot.position, d.snapshot.widget_id))

    async def widgets_by_id(self, business_id: str, widget_ids: Iterable[str]) -> dict[str, WidgetDefinition]:
        with mongo_errors("load widgets"):
            docs = await self._widgets.find(
                {"business_id": business_id, "widget_id": {"$in": list(widget_ids)}}
            ).to_list()
        return {doc["widget_id"]: _definition(doc) for doc in docs}
