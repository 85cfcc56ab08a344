"""Sidebar assembly from a run: order, placeholders, timeouts and determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.assembly import assemble_sidebar, sidebar_event_id
from orchestrator.runs import RecordedResult, Run, WidgetSnapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OK_DATA = {"title": "CRM", "items": []}


def _run(results: dict[str, RecordedResult]) -> Run:
    return Run(
        event_id="evt-1",
        business_id="acme",
        conversation_id="c1",
        status="assembling",
        occurred_at=T0,
        received_at=T0,
        deadline_at=T0 + timedelta(seconds=12),
        widgets=(
            WidgetSnapshot("zeta", "Zeta", 20, 10),
            WidgetSnapshot("crm", "CRM", 10, 10),
            WidgetSnapshot("alpha", "Alpha", 20, 10),
        ),
        results=results,
    )


def _result(status: str, data: dict[str, object] | None = None, error: dict[str, str] | None = None) -> RecordedResult:
    return RecordedResult(status=status, duration_ms=42, data=data, error=error, job_id="j")


def test_widgets_appear_once_in_position_then_id_order() -> None:
    sidebar = assemble_sidebar(_run({}), T0 + timedelta(seconds=12))
    assert [w.widget_id for w in sidebar.widgets] == ["crm", "alpha", "zeta"]


def test_missing_results_become_timeouts_with_the_widget_name_as_title() -> None:
    sidebar = assemble_sidebar(_run({"crm": _result("ok", OK_DATA)}), T0 + timedelta(seconds=12))
    by_id = {w.widget_id: w for w in sidebar.widgets}
    assert by_id["crm"].status == "ok"
    assert by_id["crm"].data.title == "CRM"
    assert by_id["alpha"].status == "timeout"
    assert by_id["alpha"].data.model_dump() == {"title": "Alpha", "items": []}
    assert by_id["alpha"].error is not None and by_id["alpha"].error.type == "timeout"
    assert by_id["alpha"].duration_ms == 12000


def test_failed_widget_keeps_its_error_and_gets_a_placeholder() -> None:
    error = {"type": "exception", "message": "ValueError: boom (line 3)"}
    sidebar = assemble_sidebar(_run({"zeta": _result("error", error=error)}), T0)
    zeta = next(w for w in sidebar.widgets if w.widget_id == "zeta")
    assert zeta.status == "error"
    assert zeta.error is not None and zeta.error.message == "ValueError: boom (line 3)"
    assert zeta.data.model_dump() == {"title": "Zeta", "items": []}
    assert zeta.duration_ms == 42


def test_sidebar_ids_are_deterministic_per_trigger() -> None:
    first = assemble_sidebar(_run({}), T0)
    second = assemble_sidebar(_run({}), T0 + timedelta(seconds=1))
    assert first.event_id == second.event_id == sidebar_event_id("acme", "evt-1")
    assert first.trigger_event_id == "evt-1"
    assert sidebar_event_id("acme", "evt-2") != first.event_id
    assert sidebar_event_id("other", "evt-1") != first.event_id
