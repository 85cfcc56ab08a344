"""Load shapes and what they measure, through the external contract only: events go in
by a ``submit`` callable, and ``sidebar.ready`` / ``sidebar.widget`` messages come back on
the ``sidebar`` exchange, matched to their event by ``trigger_event_id``.

Three shapes: closed loop (N events, C awaiting their sidebar at once), open loop (a
fixed rate for a fixed time, whatever comes back) and sequential (closed loop, C = 1).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from benchmarks.cpu import CpuMeter, per_sidebar_ms
from benchmarks.harness import BenchmarkError
from benchmarks.workload import stats_ms
from shared.topology import SIDEBAR_READY_PREFIX, SIDEBAR_WIDGET_PREFIX


class ServingError(BenchmarkError):
    """The system under test never answered a probe."""


Submit = Callable[[str], Awaitable[None]]
"""Publishes the event with this id; the load shape has noted the time just before."""


@dataclass
class Timing:
    """One event, from its publish to its sidebar (``perf_counter`` seconds unless named ``_wall``)."""

    published: float
    published_wall: float
    first_card: float | None = None
    ready: float | None = None
    sidebar: dict[str, Any] | None = None

    def complete_ms(self) -> float:
        assert self.ready is not None
        return (self.ready - self.published) * 1000

    def first_card_ms(self) -> float | None:
        """To the first ``sidebar.widget``; for a peer without cards, to its first widget's
        completion as the widget itself stamped it (``finished_at``, wall clock)."""
        if self.first_card is not None:
            return (self.first_card - self.published) * 1000
        finished = [w["finished_at"] for w in (self.sidebar or {}).get("widgets", []) if "finished_at" in w]
        return (min(finished) - self.published_wall) * 1000 if finished else None

    def durations_ms(self) -> list[float]:
        return [float(w["duration_ms"]) for w in (self.sidebar or {}).get("widgets", [])]


@dataclass
class Watch:
    """The subscription: records cards and completes the event awaiting each sidebar."""

    pending: dict[str, tuple[Timing, asyncio.Future[None]]] = field(default_factory=dict)
    lost: BaseException | None = None

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        arrived = time.perf_counter()
        body = json.loads(message.body)
        entry = self.pending.get(body.get("trigger_event_id", ""))
        if entry is None:
            return
        timing, done = entry
        if (message.routing_key or "").startswith(SIDEBAR_READY_PREFIX + "."):
            timing.ready, timing.sidebar = arrived, body
            if not done.done():
                done.set_result(None)
        elif timing.first_card is None:
            timing.first_card = arrived

    def connection_lost(self, *_: Any) -> None:
        """The subscription is gone: fail what waits and what comes, rather than wait out the deadline."""
        self.lost = ConnectionError("the connection carrying the sidebar subscription closed")
        for _timing, done in self.pending.values():
            if not done.done():
                done.set_exception(self.lost)

    def expect(self, event_id: str) -> tuple[Timing, asyncio.Future[None]]:
        if self.lost is not None:
            raise self.lost
        entry = (Timing(time.perf_counter(), time.time()), asyncio.get_running_loop().create_future())
        self.pending[event_id] = entry
        return entry

    def forget(self, event_id: str) -> None:
        self.pending.pop(event_id, None)


async def watch_sidebars(
    channel: AbstractChannel, exchange: AbstractExchange, business_id: str, *, cards: bool = True
) -> Watch:
    """Bind one exclusive queue to the business's ``sidebar.ready`` keys and, with ``cards``,
    its ``sidebar.widget`` keys. Throughput runs watch sidebars only, as the chord's client
    does (the chord has no cards): both clients then do the same work per sidebar."""
    watch = Watch()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for prefix in (SIDEBAR_READY_PREFIX, SIDEBAR_WIDGET_PREFIX) if cards else (SIDEBAR_READY_PREFIX,):
        await queue.bind(exchange, routing_key=f"{prefix}.{business_id}.#")
    await queue.consume(watch.on_message, no_ack=True)
    channel.close_callbacks.add(watch.connection_lost)
    return watch


@dataclass
class Outcome:
    """What one load run measured."""

    submitted: int = 0
    timings: list[Timing] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    first_publish: float | None = None
    last_ready: float | None = None
    wall_s: float = 0.0

    def summary(self, widgets: int) -> dict[str, Any]:
        complete = [t.complete_ms() for t in self.timings]
        first = [ms for t in self.timings if (ms := t.first_card_ms()) is not None]
        statuses: Counter[str] = Counter()
        widget_errors: Counter[str] = Counter()
        all_ok = 0
        for t in self.timings:
            entries = (t.sidebar or {}).get("widgets", [])
            statuses.update(w["status"] for w in entries)
            widget_errors.update(f"{e.get('type')}: {e.get('message')}"[:300] for w in entries if (e := w.get("error")))
            all_ok += len(entries) == widgets and all(w["status"] == "ok" for w in entries)
        elapsed = (self.last_ready or 0.0) - (self.first_publish or 0.0)
        return {
            "submitted": self.submitted,
            "completed": len(self.timings),
            "missing": self.submitted - len(self.timings),
            "all_widgets_ok": all_ok,
            "errors": dict(self.errors),
            "widget_statuses": dict(statuses),
            "widget_errors": dict(widget_errors.most_common(5)),
            "latency_ms": stats_ms(complete),
            "first_card_ms": stats_ms(first) if first else None,
            "duration_s": round(elapsed, 3),
            "sidebars_per_s": round(len(self.timings) / elapsed, 1) if elapsed > 0 else None,
        }


async def _one(watch: Watch, submit: Submit, outcome: Outcome, deadline: float) -> None:
    event_id = uuid.uuid4().hex
    timing, done = watch.expect(event_id)  # raises once the subscription is lost: the run stops
    outcome.submitted += 1
    outcome.first_publish = min(outcome.first_publish or timing.published, timing.published)
    try:
        await submit(event_id)
        await asyncio.wait_for(done, max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return
    except Exception as exc:  # noqa: BLE001 - any publish failure is counted and reported, not fatal to the run
        outcome.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        return
    finally:
        watch.forget(event_id)
    outcome.timings.append(timing)
    outcome.last_ready = max(outcome.last_ready or 0.0, timing.ready or 0.0)


async def closed_loop(watch: Watch, submit: Submit, events: int, concurrency: int, deadline: float) -> Outcome:
    """``events`` events with at most ``concurrency`` awaiting their sidebar."""
    outcome = Outcome()
    slots = asyncio.Semaphore(concurrency)
    began = time.perf_counter()

    async def guarded() -> None:
        try:
            await _one(watch, submit, outcome, deadline)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tasks:
        for _ in range(events):
            await slots.acquire()
            if time.monotonic() >= deadline:
                slots.release()
                break
            tasks.create_task(guarded())
    outcome.wall_s = time.perf_counter() - began
    return outcome


async def spaced(watch: Watch, submit: Submit, events: int, gap_s: float, deadline: float) -> Outcome:
    """``events`` events one at a time, each ``gap_s`` after the previous sidebar: every one
    meets an idle stack (the previous run's record and acks are done), as a single
    conversation opened on a quiet help desk would."""
    outcome = Outcome()
    began = time.perf_counter()
    for _ in range(events):
        if time.monotonic() >= deadline:
            break
        await _one(watch, submit, outcome, deadline)
        await asyncio.sleep(gap_s)
    outcome.wall_s = time.perf_counter() - began
    return outcome


async def open_loop(
    watch: Watch, submit: Submit, rate: float, duration_s: float, deadline: float, drain_s: float
) -> Outcome:
    """One event every 1/``rate`` s for ``duration_s``, whatever comes back; each waits at most
    ``drain_s`` past the end of publishing (and never past ``deadline``)."""
    outcome = Outcome()
    began = time.monotonic()
    stop_waiting = min(deadline, began + duration_s + drain_s)
    async with asyncio.TaskGroup() as tasks:
        for i in range(int(rate * duration_s)):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            if time.monotonic() >= deadline:
                break
            tasks.create_task(_one(watch, submit, outcome, stop_waiting))
    outcome.wall_s = time.monotonic() - began
    return outcome


async def until_serving(watch: Watch, submit: Submit, deadline: float, probe_wait_s: float = 3.0) -> None:
    """Submit probes until one gets its sidebar: the system then consumes, end to end."""
    started = time.monotonic()
    while True:
        probe = await closed_loop(watch, submit, 1, 1, min(deadline, time.monotonic() + probe_wait_s))
        if probe.timings:
            return
        if time.monotonic() >= deadline:
            raise ServingError(
                f"no sidebar for a probe event within {time.monotonic() - started:.0f}s; errors {dict(probe.errors)}"
            )
        await asyncio.sleep(0.5)


async def measured_throughput(
    watch: Watch,
    submit: Submit,
    meter: CpuMeter,
    *,
    warmup: int,
    events: int,
    concurrency: int,
    widgets: int,
    deadline: float,
) -> dict[str, Any]:
    """A peer's throughput run: ``warmup`` events unmeasured, then a closed loop of ``events``
    with the CPU each component spent per sidebar (``benchmarks/cpu.py``)."""
    if warmup:
        await closed_loop(watch, submit, warmup, concurrency, deadline)
    cpu_before = meter.snapshot()
    outcome = await closed_loop(watch, submit, events, concurrency, deadline)
    summary = outcome.summary(widgets)
    summary["cpu_ms_per_sidebar"] = per_sidebar_ms(cpu_before, meter.snapshot(), len(outcome.timings))
    summary["config"] = {"events": events, "concurrency": concurrency, "widgets": widgets}
    return summary
