"""Which businesses the feed is bound for: bound when a stream arrives, let go of a while after the last leaves.

``watch`` returns once the feed takes the business's events, so a stream
calls it before it subscribes to the hub and says it is connected. Concurrent
watches of one business share one bind, and a watch that meets an unbind in
flight waits for it and binds again. A failed bind fails every watch waiting
for it with ``TransientError``.

A binding outlives the business's last stream (and the last ``watch``) by the
hub's replay-buffer age, so a reconnect with ``Last-Event-ID`` within it
still replays everything. ``sweep`` (every ``SWEEP_INTERVAL_S``) then
unbinds it and makes the hub forget the business's ids: after a quiet
period a stream starts from the stored sidebar. A business whose bind or
unbind failed stays on the books, so a later sweep unbinds whatever the
broker may have kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from shared.errors import TransientError
from shared.ids import is_valid_id
from store.metrics import StoreMetrics
from store.push.binder import Binder
from store.push.hub import PushHub

log = structlog.get_logger(__name__)

SWEEP_INTERVAL_S = 30.0


@dataclass
class _Binding:
    watched_at: float
    bound: bool = False
    operation: asyncio.Task[None] | None = None  # the bind or unbind in flight, at most one


class FeedBindings:
    def __init__(
        self,
        binder: Binder,
        hub: PushHub,
        metrics: StoreMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._binder = binder
        self._hub = hub
        self._metrics = metrics
        self._linger_s = hub.buffer_age_s
        self._clock = clock
        self._bindings: dict[str, _Binding] = {}
        self._operations: set[asyncio.Task[None]] = set()
        self._sweeping: asyncio.Task[None] | None = None

    def bound(self) -> set[str]:
        """The businesses the feed is bound for now."""
        return {business_id for business_id, binding in self._bindings.items() if binding.bound}

    async def watch(self, business_id: str) -> None:
        """Return once the feed takes ``business_id``'s events; raises ``TransientError`` if it cannot."""
        if not is_valid_id(business_id):  # refused before it is on the books, where no sweep could unbind it
            raise ValueError(f"not a business id: {business_id!r}")
        while True:
            binding = self._bindings.get(business_id)
            if binding is None:
                binding = self._bindings[business_id] = _Binding(self._clock())
            binding.watched_at = self._clock()
            if binding.operation is None:
                if binding.bound:
                    return
                binding.operation = self._start(self._bind(business_id, binding))
            # Shielded: a client that goes away must not cancel a bind others wait for.
            await asyncio.shield(binding.operation)

    async def sweep(self) -> None:
        """Unbind every business without a stream (or a watch) for the hub's buffer age; return once done."""
        now = self._clock()
        unbinds = []
        for business_id, binding in list(self._bindings.items()):
            idle_since = self._hub.idle_since(business_id)
            if binding.operation is not None or idle_since is None:
                continue
            if now - max(idle_since, binding.watched_at) >= self._linger_s:
                binding.operation = self._start(self._unbind(business_id, binding))
                unbinds.append(binding.operation)
        if unbinds:
            await asyncio.wait(unbinds)

    def start(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self._sweeping = asyncio.create_task(self._sweep_every(interval_s))

    async def close(self) -> None:
        tasks = [*self._operations, *([self._sweeping] if self._sweeping is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _bind(self, business_id: str, binding: _Binding) -> None:
        try:
            await self._binder.bind(business_id)
        finally:
            binding.operation = None
        binding.bound = True
        self._metrics.stream_bound_businesses.inc()

    async def _unbind(self, business_id: str, binding: _Binding) -> None:
        try:
            # Before the broker stops routing: from here on this business's events may be missed.
            self._hub.forget(business_id)
            if binding.bound:
                binding.bound = False
                self._metrics.stream_bound_businesses.dec()
            try:
                await self._binder.unbind(business_id)
            except TransientError as exc:
                log.warning("stream.unbind_failed", business_id=business_id, error=str(exc))
                return
            if self._bindings.get(business_id) is binding:
                del self._bindings[business_id]
        finally:
            binding.operation = None

    async def _sweep_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.sweep()

    def _start(self, operation: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(operation)
        self._operations.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._operations.discard(task)
        # Retrieved here too, so a failed bind whose watchers all went away is not reported as unseen.
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, TransientError):
            log.error("stream.binding_failed", error=repr(error))
