"""``run_report``: a benchmark's report, or one line saying why not and the exit code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from benchmarks.harness import BenchmarkError, run_report
from benchmarks.load import ServingError


async def _report() -> dict[str, Any]:
    return {"scenarios": {}}


def test_the_report_comes_back() -> None:
    assert run_report("bench", _report, 5) == {"scenarios": {}}


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (BenchmarkError("no stack"), "bench: error: no stack"),
        (ServingError("no sidebar for a probe"), "bench: error: no sidebar for a probe"),
        (ConnectionRefusedError(111, "Connect call failed"), "bench: error: ConnectionRefusedError: "),
    ],
)
def test_a_failure_is_one_line_and_exit_code_1(error: Exception, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def failing() -> dict[str, Any]:
        raise error

    assert run_report("bench", failing, 5) == 1
    assert capsys.readouterr().err.startswith(line)


def test_a_run_past_its_bound_gives_up_with_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    async def endless() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    assert run_report("bench", endless, 0.05) == 1
    assert capsys.readouterr().err.strip() == "bench: error: gave up after 0.05s"
