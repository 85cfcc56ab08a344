"""What the orchestrator runs for a business: its active widgets and sealed secrets.

``MongoCatalog`` reads them (three reads, one per collection); ``CachedCatalog``
keeps each business's catalog in memory, so the hot path reads nothing. The
store publishes ``catalog.changed`` after every widget or secret write and each
replica drops that business's entry; a short TTL is the safety net for a notice
missed while a replica was disconnected (a reconnect also clears the cache).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase

from orchestrator.runs import WidgetDefinition, WidgetSnapshot
from shared.contracts.jobs import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S
from shared.mongo import BUSINESSES, SECRETS, WIDGETS, Document, mongo_errors


@dataclass(frozen=True)
class BusinessCatalog:
    business: Document
    widgets: tuple[WidgetDefinition, ...]
    # Still sealed: only executors open them.
    sealed_secrets: dict[str, str] = field(default_factory=dict)

    def definitions(self, snapshots: tuple[WidgetSnapshot, ...]) -> list[WidgetDefinition]:
        """The current definitions of a run's widgets, for a takeover; widgets since deactivated are left out."""
        by_id = {w.snapshot.widget_id: w for w in self.widgets}
        return [by_id[s.widget_id] for s in snapshots if s.widget_id in by_id]


class CatalogSource(Protocol):
    async def load(self, business_id: str) -> BusinessCatalog | None:
        """The business's catalog, or None when the business is unknown."""


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


class MongoCatalog:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._businesses = db[BUSINESSES]
        self._widgets = db[WIDGETS]
        self._secrets = db[SECRETS]

    async def load(self, business_id: str) -> BusinessCatalog | None:
        # Widgets and secrets are found by business_id, which FerretDB scans for: this runs
        # on a cache miss only, never per event.
        with mongo_errors("load catalog"):
            business, widgets, secrets = await asyncio.gather(
                self._businesses.find_one({"_id": business_id}, {"business_id": 1, "name": 1}),
                self._widgets.find({"business_id": business_id, "active": True}).to_list(),
                self._secrets.find({"business_id": business_id}, {"name": 1, "sealed": 1}).to_list(),
            )
        if business is None:
            return None
        definitions = sorted(map(_definition, widgets), key=lambda d: (d.snapshot.position, d.snapshot.widget_id))
        return BusinessCatalog(
            business=business,
            widgets=tuple(definitions),
            sealed_secrets={doc["name"]: doc["sealed"] for doc in secrets},
        )


@dataclass
class _Entry:
    loaded_at: float
    value: asyncio.Future[BusinessCatalog | None]


class CachedCatalog:
    """A per-business cache in front of a source. Concurrent misses share one load, and a
    load that an invalidation overtook is not kept."""

    def __init__(self, source: CatalogSource, *, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def get(self, business_id: str) -> BusinessCatalog | None:
        while True:
            entry = self._entries.get(business_id)
            if entry is None or self._clock() - entry.loaded_at > self._ttl:
                return await self._load(business_id)
            try:
                return await asyncio.shield(entry.value)
            except asyncio.CancelledError:
                if not entry.value.cancelled():
                    raise
                # The task loading it was cancelled, not this one: load again.

    async def _load(self, business_id: str) -> BusinessCatalog | None:
        entry = _Entry(self._clock(), asyncio.get_running_loop().create_future())
        self._entries[business_id] = entry
        try:
            value = await self._source.load(business_id)
        except BaseException as exc:
            if self._entries.get(business_id) is entry:
                del self._entries[business_id]
            if isinstance(exc, Exception):
                entry.value.set_exception(exc)
                entry.value.exception()  # retrieved: its waiters re-raise it, nobody else logs it
            else:
                entry.value.cancel()
            raise
        entry.value.set_result(value)
        return value

    def invalidate(self, business_id: str) -> None:
        self._entries.pop(business_id, None)

    def clear(self) -> None:
        self._entries.clear()
