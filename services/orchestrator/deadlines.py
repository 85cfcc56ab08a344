"""Closing runs whose deadline passed: a precise local timer plus a shared sweep.

The replica that started a run arms a timer for its deadline. Because replicas
keep no state, every replica also sweeps MongoDB for runs past their deadline
(or stuck in an expired assembly claim) and finalizes them; the atomic claim
makes the sweep safe to run everywhere at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog

from orchestrator.pipeline import Finalizer
from orchestrator.runs import Run, RunKey, RunStore

log = structlog.get_logger(__name__)

_SWEEP_BATCH = 100


class DeadlineScheduler:
    def __init__(
        self,
        runs: RunStore,
        finalizer: Finalizer,
        *,
        sweep_interval_s: float,
        lease_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._runs = runs
        self._finalizer = finalizer
        self._interval = sweep_interval_s
        self._lease = lease_s
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, run: Run) -> None:
        delay = max(0.0, (run.deadline_at - self._clock()).total_seconds())
        self._spawn(self._finalize_after(run.key, delay))

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - the sweep must outlive a database hiccup
                log.warning("deadline.sweep_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)

    async def sweep_once(self) -> int:
        finalized = 0
        for key in await self._runs.due(self._clock(), self._lease, _SWEEP_BATCH):
            finalized += await self._finalizer.finalize(key)
        return finalized

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _finalize_after(self, key: RunKey, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._finalizer.finalize(key)
        except Exception as exc:  # noqa: BLE001 - the sweep retries whatever the timer could not close
            log.warning("deadline.finalize_failed", event_id=key.event_id, error=f"{type(exc).__name__}: {exc}")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
