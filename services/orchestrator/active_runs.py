"""The runs this replica owns, with their results, in memory.

A run is owned by the replica holding its event's delivery, and only for as
long as it holds it: when the broker connection drops, the deliveries are gone
(RabbitMQ requeues them for whichever replica comes next), so every run they
carried is abandoned here and taken over there. Nothing else needs to be
shared: results reach their owner through its private queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.runs import Run, RunKey, WidgetSnapshot
from shared.contracts.jobs import WidgetResult
from shared.errors import TransientError


class RunAbandoned(TransientError):
    """The run's delivery was lost with the broker connection; another holder takes it over."""


def _held() -> bool:
    return True


@dataclass
class ActiveRun:
    run: Run
    # Whether its owner still holds the event's delivery.
    held: Callable[[], bool] = _held
    results: dict[str, WidgetResult] = field(default_factory=dict)
    _announced: int = 0
    _settled: asyncio.Event = field(default_factory=asyncio.Event)
    _abandoned: bool = False

    def __post_init__(self) -> None:
        if not self.run.widgets:
            self._settled.set()

    def add(self, result: WidgetResult) -> WidgetSnapshot | None:
        """Keep the first result of each of the run's widgets; the widget's snapshot when kept.

        The run settles once every kept result is also ``announced``, so each card is
        published before the sidebar that follows it.
        """
        snapshot = next((w for w in self.run.widgets if w.widget_id == result.widget_id), None)
        if snapshot is None or result.widget_id in self.results or self._settled.is_set():
            return None
        self.results[result.widget_id] = result
        return snapshot

    def announced(self) -> None:
        self._announced += 1
        if self._announced == len(self.run.widgets):
            self._settled.set()

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.run.widgets)

    async def wait(self, timeout_s: float) -> None:
        """Until every widget's result is in or ``timeout_s`` passed; then no result is taken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), max(0.0, timeout_s))
        self._settled.set()
        self.check()

    def check(self) -> None:
        if self._abandoned or not self.held():
            raise RunAbandoned(f"run {self.run.event_id} was abandoned with its delivery")

    def abandon(self) -> None:
        self._abandoned = True
        self._settled.set()


class ActiveRuns:
    def __init__(self) -> None:
        self._runs: dict[RunKey, ActiveRun] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def start(self, run: Run, held: Callable[[], bool] = _held) -> ActiveRun:
        if (previous := self._runs.get(run.key)) is not None:
            previous.abandon()
        active = self._runs[run.key] = ActiveRun(run, held)
        return active

    def get(self, key: RunKey) -> ActiveRun | None:
        return self._runs.get(key)

    def finish(self, active: ActiveRun) -> None:
        if self._runs.get(active.run.key) is active:
            del self._runs[active.run.key]

    def abandon_unheld(self) -> int:
        """Abandon the runs whose deliveries were lost (a reconnect); those taken since stay."""
        return self._abandon([active for active in self._runs.values() if not active.held()])

    def abandon_all(self) -> int:
        return self._abandon(list(self._runs.values()))

    @staticmethod
    def _abandon(runs: list[ActiveRun]) -> int:
        for active in runs:
            active.abandon()
        return len(runs)
