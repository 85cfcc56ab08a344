"""The orchestrator's catalog cache: hits read nothing, notices and the TTL drop entries,
concurrent misses share one load, and a failed load is not kept."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.catalog import BusinessCatalog, CachedCatalog
from shared.errors import TransientError


class CountingSource:
    def __init__(self) -> None:
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.fail_next = False

    async def load(self, business_id: str) -> BusinessCatalog | None:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise TransientError("database unavailable")
        if business_id == "unknown":
            return None
        return BusinessCatalog(business={"business_id": business_id, "name": f"v{self.loads}"}, widgets=())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_cached_business_is_read_once() -> None:
    source = CountingSource()
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    first, second = await catalog.get("acme"), await catalog.get("acme")
    assert first is second
    assert source.loads == 1


async def test_a_notice_drops_the_business_and_only_it() -> None:
    source = CountingSource()
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    await catalog.get("acme")
    await catalog.get("globex")
    catalog.invalidate("acme")
    reloaded = await catalog.get("acme")
    await catalog.get("globex")
    assert reloaded is not None and reloaded.business["name"] == "v3"
    assert source.loads == 3


async def test_entries_expire_after_the_ttl() -> None:
    source, clock = CountingSource(), Clock()
    catalog = CachedCatalog(source, ttl_s=30, clock=clock)
    await catalog.get("acme")
    clock.now = 29.9
    await catalog.get("acme")
    clock.now = 30.1
    await catalog.get("acme")
    assert source.loads == 2


async def test_concurrent_misses_share_one_load() -> None:
    source = CountingSource()
    source.gate = asyncio.Event()
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    waiting = [asyncio.create_task(catalog.get("acme")) for _ in range(5)]
    await asyncio.sleep(0)
    source.gate.set()
    values = await asyncio.gather(*waiting)
    assert source.loads == 1
    assert all(value is values[0] for value in values)


async def test_a_notice_during_a_load_makes_the_next_get_load_again() -> None:
    source = CountingSource()
    source.gate = asyncio.Event()
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    loading = asyncio.create_task(catalog.get("acme"))
    await asyncio.sleep(0)
    catalog.invalidate("acme")
    source.gate.set()
    await loading
    await catalog.get("acme")
    assert source.loads == 2


async def test_a_failed_load_is_raised_to_its_waiters_and_not_kept() -> None:
    source = CountingSource()
    source.fail_next = True
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    with pytest.raises(TransientError):
        await catalog.get("acme")
    assert await catalog.get("acme") is not None
    assert source.loads == 2


async def test_an_unknown_business_is_none_until_a_notice() -> None:
    source = CountingSource()
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    assert await catalog.get("unknown") is None
    assert await catalog.get("unknown") is None
    assert source.loads == 1


async def test_clear_drops_everything() -> None:
    source = CountingSource()
    catalog = CachedCatalog(source, ttl_s=30, clock=Clock())
    await catalog.get("acme")
    catalog.clear()
    await catalog.get("acme")
    assert source.loads == 2
