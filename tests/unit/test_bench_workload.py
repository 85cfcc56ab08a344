"""The benchmark workload's pure pieces: statistics and the upstream responder."""

from __future__ import annotations

import asyncio
import json
import time

from benchmarks.workload import (
    Answers,
    KeepAliveClient,
    bench_widgets,
    percentile,
    realistic_delays,
    start_upstream,
    stats_ms,
)
from demo.mock_api import API_KEY_HEADER, JANE

AUTH = {"Authorization": API_KEY_HEADER}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 1) == 7.0


def test_stats_of_nothing_are_empty() -> None:
    assert stats_ms([]) == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    assert stats_ms([3.0, 1.0, 2.0])["p50"] == 2.0


def test_realistic_delays_differ_per_widget_within_50_to_200_ms() -> None:
    delays = realistic_delays(bench_widgets(5, 11))
    assert sorted(delays) == ["/w/11", "/w/12", "/w/13", "/w/14", "/w/15"]
    assert min(delays.values()) == 0.05
    assert max(delays.values()) == 0.2
    assert len(set(delays.values())) == 5


def test_answers_serve_the_demo_data_under_a_widget_prefix_and_cache_it() -> None:
    answers = Answers({"/w/3": 0.1})
    first = answers.response(f"/w/3/customers?email={JANE}".encode(), API_KEY_HEADER.encode(), keep_alive=True)
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(body)["name"] == "Jane Cooper"
    assert answers.response(f"/w/3/customers?email={JANE}".encode(), API_KEY_HEADER.encode(), True) is first
    assert answers.delay_for("/w/3/customers") == 0.1
    assert answers.delay_for("/w/4/customers") == 0.0
    assert answers.delay_for("/customers") == 0.0


def test_answers_keep_the_demo_apis_auth_rule() -> None:
    response = Answers().response(f"/customers?email={JANE}".encode(), None, keep_alive=False)
    assert response.startswith(b"HTTP/1.1 401")
    assert b"Connection: close" in response


async def test_upstream_answers_keep_alive_requests_after_their_paths_delay() -> None:
    server = await start_upstream("127.0.0.1", 0, {"/w/2": 0.05})
    port = server.sockets[0].getsockname()[1]
    client = KeepAliveClient("127.0.0.1", port)
    async with server:
        try:
            status, body = await client.get(f"/w/1/customers?email={JANE}", AUTH)
            assert status == 200
            assert json.loads(body)["tier"] == "Premium"
            started = time.perf_counter()
            status, _ = await client.get(f"/w/2/customers?email={JANE}", AUTH)
            assert status == 200
            assert time.perf_counter() - started >= 0.045
            results = await asyncio.gather(*(client.get(f"/warranties?email={JANE}", AUTH) for _ in range(20)))
            assert {status for status, _ in results} == {200}
        finally:
            await client.aclose()
