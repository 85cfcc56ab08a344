"""The PrometheusRule (deploy/k8s/base/prometheus-rule.yaml) passes ``promtool check rules`` and
its unit tests (tests/alerts/*.yaml, ``promtool test rules``); every alert has a unit test in
which it fires and a runbook; every rule names only metrics that exist.

promtool is Debian's, unpacked by scripts/install-promtool.sh into .local/bin. Without it these
tests fail: CI installs it, and a check that silently skips is a check nobody runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metric_names import RABBITMQ_METRICS, service_metric_names, unknown_names

ROOT = Path(__file__).resolve().parents[2]
RULE_FILE = ROOT / "deploy" / "k8s" / "base" / "prometheus-rule.yaml"
ALERT_TESTS = sorted((ROOT / "tests" / "alerts").glob("*.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_SECTIONS = ("## What it means", "## How to confirm", "## What to do")
# The name the unit test files give the extracted rules (their rule_files entry).
EXTRACTED = "rules.yaml"


def _promtool() -> str:
    for candidate in (os.environ.get("PROMTOOL"), str(ROOT / ".local" / "bin" / "promtool"), shutil.which("promtool")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "promtool not found (PROMTOOL, .local/bin/promtool or PATH): run scripts/install-promtool.sh",
        pytrace=False,
    )


def _resource() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULE_FILE.read_text())
    return loaded


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _resource()["spec"]["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


@pytest.fixture(scope="module")
def promtool() -> str:
    return _promtool()


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PrometheusRule's spec as a plain rule file, beside copies of the unit test files."""
    directory = tmp_path_factory.mktemp("alerts")
    (directory / EXTRACTED).write_text(yaml.safe_dump(_resource()["spec"], sort_keys=False))
    for test_file in ALERT_TESTS:
        shutil.copy(test_file, directory / test_file.name)
    return directory


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=100, check=False)


def test_the_rule_file_is_a_prometheus_operator_resource() -> None:
    resource = _resource()
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["name"] == "sidebar-widgets"
    assert set(resource["spec"]) == {"groups"}


def test_promtool_check_rules_accepts_the_rules(promtool: str, rules_dir: Path) -> None:
    result = _run(promtool, "check", "rules", EXTRACTED, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


@pytest.mark.parametrize("test_file", ALERT_TESTS, ids=[path.name for path in ALERT_TESTS])
def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path, test_file: Path) -> None:
    assert yaml.safe_load(test_file.read_text())["rule_files"] == [EXTRACTED]
    result = _run(promtool, "test", "rules", test_file.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_in_which_it_fires() -> None:
    firing = {
        case["alertname"]
        for test_file in ALERT_TESTS
        for group in yaml.safe_load(test_file.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(_alerts()) - firing == set()


def test_the_known_traps_of_dead_letter_alerts_are_tested() -> None:
    """The first dead letter (a counter series born at 1) and a single service dead-lettering."""
    names = {group["name"] for group in yaml.safe_load((ROOT / "tests/alerts/dead_letters.yaml").read_text())["tests"]}
    assert "the very first dead letter of a service that dead-lettered nothing before fires" in names
    assert "one service dead-lettering fires while the other's counters stand still" in names


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_every_alert_has_a_severity_a_summary_and_a_runbook(alert: str) -> None:
    rule = _alerts()[alert]
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert rule["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{alert}.md")
    runbook = (RUNBOOKS / f"{alert}.md").read_text()
    assert runbook.startswith(f"# {alert}\n")
    positions = [runbook.find(section) for section in RUNBOOK_SECTIONS]
    assert -1 not in positions and positions == sorted(positions), f"{alert}.md needs {RUNBOOK_SECTIONS}"


def test_every_runbook_belongs_to_an_alert() -> None:
    assert {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"} == set(_alerts())


def test_every_rule_names_only_exported_recorded_or_rabbitmq_metrics() -> None:
    recorded = frozenset(rule["record"] for rule in _rules() if "record" in rule)
    known = service_metric_names() | RABBITMQ_METRICS | recorded
    assert unknown_names((rule["expr"] for rule in _rules()), known) == {}


def test_slo_targets_in_the_rules_match_the_docs() -> None:
    """The budgets in the burn-rate alerts are the SLO targets docs/operations.md states."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    alerts = _alerts()
    assert "(14.4 * 0.005)" in alerts["SidebarAvailabilityFastBurn"]["expr"]
    assert "(14.4 * 0.01)" in alerts["SidebarLatencyFastBurn"]["expr"]
    assert re.search(r"availability\*?: 99\.5 %\s+of\s+sidebars\s+complete", operations, re.IGNORECASE)
    assert re.search(r"latency\*?: 99 %\s+of\s+sidebars\s+published\s+within\s+5 s", operations, re.IGNORECASE)
