"""A run's results in its owner's memory: the first result per widget wins, the run settles
once every card is out, the deadline closes it, and abandoning it hands it back."""

from __future__ import annotations

import pytest

from orchestrator.active_runs import ActiveRuns, RunAbandoned
from orchestrator.runs import Run
from shared.contracts.jobs import WidgetResult
from tests.runs import make_result, make_run

RUN = make_run("a", "b")


def _result(widget_id: str, duration_ms: int = 5) -> WidgetResult:
    return make_result(RUN, widget_id, "timeout", duration_ms=duration_ms)


async def test_the_first_result_of_each_widget_is_kept_and_unknown_widgets_are_ignored() -> None:
    active = ActiveRuns().start(RUN)
    assert active.add(_result("a", 1)) == RUN.widgets[0]
    assert active.add(_result("a", 2)) is None
    assert active.add(_result("zzz")) is None
    assert active.results["a"].duration_ms == 1
    assert not active.complete


async def test_the_run_settles_when_every_result_is_announced() -> None:
    active = ActiveRuns().start(RUN)
    active.add(_result("a"))
    active.add(_result("b"))
    assert active.complete
    active.announced()
    active.announced()
    await active.wait(timeout_s=60)  # returns at once: settled


async def test_the_deadline_settles_an_incomplete_run_and_later_results_are_refused() -> None:
    active = ActiveRuns().start(RUN)
    active.add(_result("a"))
    active.announced()
    await active.wait(timeout_s=0)
    assert active.add(_result("b")) is None
    assert list(active.results) == ["a"]


async def test_a_run_without_widgets_is_settled_from_the_start() -> None:
    active = ActiveRuns().start(Run(**{**vars(RUN), "widgets": ()}))
    await active.wait(timeout_s=60)


async def test_abandoning_wakes_the_owner_with_run_abandoned() -> None:
    runs = ActiveRuns()
    active = runs.start(RUN)
    assert runs.abandon_all() == 1
    with pytest.raises(RunAbandoned):
        await active.wait(timeout_s=60)


async def test_a_newer_start_of_the_same_run_abandons_the_older_and_finish_removes_only_its_own() -> None:
    runs = ActiveRuns()
    older = runs.start(RUN)
    newer = runs.start(RUN)
    with pytest.raises(RunAbandoned):
        older.check()
    runs.finish(older)
    assert runs.get(RUN.key) is newer
    runs.finish(newer)
    assert runs.get(RUN.key) is None


async def test_a_reconnect_abandons_only_the_runs_whose_delivery_was_lost() -> None:
    runs = ActiveRuns()
    lost = runs.start(RUN, held=lambda: False)
    kept = runs.start(Run(**{**vars(RUN), "event_id": "evt-2"}), held=lambda: True)
    assert runs.abandon_unheld() == 1
    with pytest.raises(RunAbandoned):
        lost.check()
    kept.check()


async def test_a_run_whose_delivery_is_gone_may_not_publish_even_before_the_reconnect() -> None:
    held = [True]
    active = ActiveRuns().start(RUN, held=lambda: held[0])
    active.check()
    held[0] = False
    with pytest.raises(RunAbandoned):
        active.check()
