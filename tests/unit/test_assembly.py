"""Sidebar assembly from a run and its results: order, placeholders, timeouts and determinism."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.assembly import assemble_sidebar, sidebar_event_id
from orchestrator.runs import Run, WidgetSnapshot
from shared.contracts.events import WidgetError
from shared.contracts.widget_output import WidgetOutput
from tests.runs import T0, make_result, make_run

# Positions 20, 10, 20: assembly orders by position, then by id.
RUN = Run(
    **{
        **vars(make_run()),
        "widgets": (
            WidgetSnapshot("zeta", "Zeta", 20, 10),
            WidgetSnapshot("crm", "CRM", 10, 10),
            WidgetSnapshot("alpha", "Alpha", 20, 10),
        ),
    }
)


def test_widgets_appear_once_in_position_then_id_order() -> None:
    sidebar = assemble_sidebar(RUN, {}, T0 + timedelta(seconds=12))
    assert [w.widget_id for w in sidebar.widgets] == ["crm", "alpha", "zeta"]


def test_missing_results_become_timeouts_with_the_widget_name_as_title() -> None:
    output = WidgetOutput(title="CRM", items=[])
    sidebar = assemble_sidebar(RUN, {"crm": make_result(RUN, "crm", data=output)}, T0 + timedelta(seconds=12))
    by_id = {w.widget_id: w for w in sidebar.widgets}
    assert by_id["crm"].status == "ok"
    assert by_id["crm"].data is output, "the executor's typed output is passed through as it is"
    assert by_id["alpha"].status == "timeout"
    assert by_id["alpha"].data.model_dump() == {"title": "Alpha", "items": []}
    assert by_id["alpha"].error is not None and by_id["alpha"].error.type == "timeout"
    assert by_id["alpha"].duration_ms == 12000


def test_failed_widget_keeps_its_error_and_gets_a_placeholder() -> None:
    error = WidgetError(type="exception", message="ValueError: boom (line 3)")
    sidebar = assemble_sidebar(RUN, {"zeta": make_result(RUN, "zeta", "error", error=error)}, T0)
    zeta = next(w for w in sidebar.widgets if w.widget_id == "zeta")
    assert zeta.status == "error"
    assert zeta.error == error
    assert zeta.data.model_dump() == {"title": "Zeta", "items": []}
    assert zeta.duration_ms == 42


def test_a_widget_that_timed_out_in_the_executor_is_a_timeout() -> None:
    error = WidgetError(type="timeout", message="widget exceeded its 10 s timeout")
    sidebar = assemble_sidebar(RUN, {"crm": make_result(RUN, "crm", "timeout", error=error)}, T0)
    crm = next(w for w in sidebar.widgets if w.widget_id == "crm")
    assert (crm.status, crm.error) == ("timeout", error)


def test_sidebar_ids_are_deterministic_per_trigger() -> None:
    first = assemble_sidebar(RUN, {}, T0)
    second = assemble_sidebar(RUN, {}, T0 + timedelta(seconds=1))
    assert first.event_id == second.event_id == sidebar_event_id("acme", "evt-1")
    assert first.trigger_event_id == "evt-1"
    assert sidebar_event_id("acme", "evt-2") != first.event_id
    assert sidebar_event_id("other", "evt-1") != first.event_id
