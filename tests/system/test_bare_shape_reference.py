"""The benchmark's reference (``benchmarks/peers/bare_shape.py``) must do the product's work,
or its figures mean nothing: every event gets its sidebar with every widget's result, in
both of its scenarios. Correctness only; its speed is for ``make bench`` to print."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from benchmarks.peers.bare_shape import benchmark, parse_args
from demo.examples import EXAMPLES


@pytest.mark.timeout(300)
async def test_the_reference_serves_every_sidebar_with_every_widget() -> None:
    args = parse_args(["--events", "12", "--warmup", "2", "--idle-events", "3", "--widgets", "3", "--timeout", "200"])
    # Bounded inside the test's own limit: on time-out its clean-up (processes, vhost, database) still runs.
    async with asyncio.timeout(240):
        report = await benchmark(args, datetime.now(UTC).strftime("test%Y%m%dT%H%M%S"))

    throughput = report["scenarios"]["throughput"]
    assert throughput["completed"] == throughput["submitted"] == 12
    assert throughput["all_widgets_ok"] == 12
    assert throughput["widget_statuses"] == {"ok": 36}
    idle = report["scenarios"]["idle"]
    assert idle["completed"] == idle["submitted"] == 3
    assert idle["widget_statuses"] == {"ok": 3 * len(EXAMPLES)}
    assert idle["all_widgets_ok"] == 3
