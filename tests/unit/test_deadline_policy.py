"""The sidebar deadline: the largest widget timeout plus a margin, or a fixed value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.pipeline import DeadlinePolicy
from orchestrator.runs import WidgetSnapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _widget(timeout_s: float) -> WidgetSnapshot:
    return WidgetSnapshot("w", "W", 0, timeout_s)


def test_default_deadline_is_the_largest_timeout_plus_margin() -> None:
    policy = DeadlinePolicy(margin_s=2.0)
    assert policy.deadline(T0, (_widget(3), _widget(10), _widget(1))) == T0 + timedelta(seconds=12)


def test_no_widgets_means_only_the_margin() -> None:
    assert DeadlinePolicy(margin_s=2.0).deadline(T0, ()) == T0 + timedelta(seconds=2)


def test_a_fixed_deadline_overrides_the_timeouts() -> None:
    assert DeadlinePolicy(margin_s=2.0, fixed_s=5).deadline(T0, (_widget(30),)) == T0 + timedelta(seconds=5)
