"""Concurrency slots and their uids: as root, every concurrent widget process runs
under a uid of its own, so widgets running side by side cannot signal or ptrace
one another; a slot's uid is reused only once its previous process group is dead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class UidSlots:
    def __init__(self, first_uid: int, slots: int) -> None:
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(slots):
            self._free.put_nowait(first_uid + slot)

    @asynccontextmanager
    async def take(self) -> AsyncIterator[int]:
        """Wait for a free slot; its uid is returned to the pool when the run ends."""
        uid = await self._free.get()
        try:
            yield uid
        finally:
            self._free.put_nowait(uid)
