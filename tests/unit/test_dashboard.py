"""The Grafana dashboard (deploy/grafana/sidebar-widgets.json) queries only what exists: every
Prometheus query names metrics the services export, the rules record, or RabbitMQ's plugin
serves, and every Loki query reads fields the executor's log line carries."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.contracts.events import EventContext
from shared.contracts.jobs import WidgetJob
from tests.metric_names import RABBITMQ_METRICS, promql_metric_names, service_metric_names, unknown_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "sidebar-widgets.json"
RULES = ROOT / "deploy" / "k8s" / "base" / "prometheus-rule.yaml"
EXECUTOR_JOBS = ROOT / "services" / "executor" / "jobs.py"
# Fields structlog adds to every line (shared/logging.py).
LOG_LINE_FIELDS = frozenset({"event", "level", "timestamp", "service"})


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _targets(datasource_type: str) -> list[tuple[str, str]]:
    """(panel title, query) of every target on a data source of this type."""
    return [
        (panel["title"], target["expr"])
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
        if target.get("datasource", panel.get("datasource", {})).get("type") == datasource_type
    ]


def _recorded_names() -> frozenset[str]:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    return frozenset(rule["record"] for group in spec["groups"] for rule in group["rules"] if "record" in rule)


def _known_metrics() -> frozenset[str]:
    return service_metric_names() | RABBITMQ_METRICS | _recorded_names()


def _widget_finished_fields() -> frozenset[str]:
    """The keywords of the executor's widget.finished log call, plus the ids the consume
    wrapper binds for a job and the fields of every line."""
    tree = ast.parse(EXECUTOR_JOBS.read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "widget.finished"
    ]
    assert len(calls) == 1, "the executor logs widget.finished exactly once"
    job = WidgetJob(
        job_id="r.w",
        run_id="r",
        purpose="sidebar",
        business_id="b",
        conversation_id="c",
        widget_id="w",
        widget_name="W",
        code="",
        timeout_s=1,
        context=EventContext(conversation={}, customer=None, business={}),
        expires_at=datetime.now(UTC),
    )
    return frozenset({kw.arg for kw in calls[0].keywords if kw.arg} | set(job.log_fields()) | LOG_LINE_FIELDS)


def test_every_prometheus_query_names_only_exported_recorded_or_rabbitmq_metrics() -> None:
    targets = _targets("prometheus")
    assert len(targets) > 30
    assert all(promql_metric_names(expr) for _, expr in targets), "a query that names no metric"
    assert unknown_names((expr for _, expr in targets), _known_metrics()) == {}


def test_template_variable_queries_name_exported_metrics() -> None:
    queries = [
        variable["query"]["query"] for variable in _dashboard()["templating"]["list"] if variable["type"] == "query"
    ]
    names = [re.fullmatch(r"label_values\((\w+)\{.*\}, \w+\)", query) for query in queries]
    assert queries
    assert all(match is not None and match[1] in _known_metrics() for match in names), queries


def test_every_loki_query_filters_widget_finished_and_reads_fields_that_line_carries() -> None:
    fields = _widget_finished_fields()
    targets = _targets("loki")
    assert len(targets) == 2
    for title, expr in targets:
        assert re.findall(r'event="([^"]+)"', expr) and set(re.findall(r'event="([^"]+)"', expr)) == {
            "widget.finished"
        }, title
        used = set(re.findall(r"\|\s*(\w+)\s*(?:=~|!~|!=|=|>=|<=|>|<)", expr)) - {"__error__"}
        used |= set(re.findall(r"\bunwrap\s+(\w+)", expr))
        used |= {label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr) for label in group.split(",")}
        assert used <= fields, f"{title}: {sorted(used - fields)} not on widget.finished"


def test_every_variable_a_query_uses_is_defined() -> None:
    dashboard = _dashboard()
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    builtins = {"__rate_interval", "__range", "__interval"}
    text = json.dumps(dashboard["panels"])
    used = set(re.findall(r"\$\{?(\w+)\}?", text)) - builtins
    assert used <= defined


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    """RED per service, sidebar latency, per-widget p95 and errors, queues, saturation, dead letters."""
    text = json.dumps(_dashboard())
    for needed in (
        "store_http_requests_total",
        "store_http_request_duration_seconds_bucket",
        "orchestrator_messages_total",
        "orchestrator_message_handle_seconds_bucket",
        "executor_messages_total",
        "executor_message_handle_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(orchestrator_sidebar_latency_seconds_bucket",
        "quantile_over_time(0.95",
        'status=~\\"error|timeout\\"',
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_consumers",
        "executor_jobs_in_flight",
        "sidebar:dead_letters:increase15m",
        "sidebar:availability_error_ratio:rate1h",
        "sidebar:latency_error_ratio:rate1h",
    ):
        assert needed in text, needed


def test_the_rabbitmq_metrics_relied_on_are_documented() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count" in operations
    assert all(f"`{name}`" in operations for name in RABBITMQ_METRICS)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('histogram_quantile(0.95, sum by (le) (rate(a_bucket{route!~".*/x"}[$__rate_interval])))', {"a_bucket"}),
        ("sum(b) / ($executor_concurrency * count(b)) > bool 0.9", {"b"}),
        ('label_replace(c > 0 unless max_over_time(c[1h] offset 15m), "service", "x", "", "")', {"c"}),
        ("1 - d:ratio:rate1h / 0.01 or vector(0)", {"d:ratio:rate1h"}),
        ('e / on () group_left () (sum(rate(f[5m])) or vector(0)) > 1e3 or absent(g{q="h"})', {"e", "f", "g"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names
