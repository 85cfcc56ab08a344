"""An in-memory binder with the same semantics as ``BrokerFeed``'s bindings, for tests of the bookkeeping.

It records which businesses are routed and every call, can hold binds in
flight (clear ``release``; ``holding`` is set once a bind waits on it), and
can fail like a broker that is down (``broken``).
"""

from __future__ import annotations

import asyncio

from shared.errors import TransientError
from shared.ids import is_valid_id


class MemoryBinder:
    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.calls: list[tuple[str, str]] = []  # ("bind" or "unbind", business_id), in call order
        self.broken = False
        self.release = asyncio.Event()
        self.release.set()
        self.holding = asyncio.Event()

    async def bind(self, business_id: str) -> None:
        self._call("bind", business_id)
        if not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        self.bound.add(business_id)

    async def unbind(self, business_id: str) -> None:
        self._call("unbind", business_id)
        self.bound.discard(business_id)

    def _call(self, name: str, business_id: str) -> None:
        if not is_valid_id(business_id):
            raise ValueError(f"not a business id: {business_id!r}")
        self.calls.append((name, business_id))
        if self.broken:
            raise TransientError(f"cannot {name} {business_id!r}: the memory binder is broken")
