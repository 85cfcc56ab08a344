"""Metric names the dashboard and the alert rules may use, and the names a PromQL query uses.

The services' names are read from their own Prometheus registries, built as each service
builds its registry at start-up, so a renamed or removed metric fails the tests that use this.
RabbitMQ's names are those of its Prometheus plugin's ``/metrics/detailed`` endpoint with the
``queue_coarse_metrics`` and ``queue_consumer_count`` families (docs/operations.md#dashboard).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from executor.metrics import ExecutorMetrics
from orchestrator.metrics import OrchestratorMetrics
from shared.consumer import ConsumerMetrics
from shared.metrics import new_registry
from shared.mongo import CommandCounter
from store.metrics import StoreMetrics

RABBITMQ_METRICS = frozenset(
    {
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_messages_unacked",
        "rabbitmq_detailed_queue_messages",
        "rabbitmq_detailed_queue_consumers",
    }
)

# The series a metric family exposes, by its type (the Prometheus text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def _orchestrator_registry() -> CollectorRegistry:
    registry = new_registry()  # as orchestrator/app.py wires it
    OrchestratorMetrics(registry)
    ConsumerMetrics(registry, "orchestrator")
    CommandCounter(registry, "orchestrator")
    return registry


def _executor_registry() -> CollectorRegistry:
    registry = new_registry()  # as executor/app.py wires it
    ExecutorMetrics(registry)
    ConsumerMetrics(registry, "executor")
    return registry


def service_metric_names() -> frozenset[str]:
    """Every series name the three services can expose."""
    registries = (_orchestrator_registry(), _executor_registry(), StoreMetrics().registry)
    return frozenset(
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in _SUFFIXES[family.type]
    )


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "atan2"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names or values, durations or Grafana variables."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def unknown_names(exprs: Iterable[str], known: frozenset[str]) -> dict[str, set[str]]:
    """For each expression naming a metric outside ``known``, those names."""
    return {expr: names - known for expr in exprs if (names := promql_metric_names(expr)) - known}
