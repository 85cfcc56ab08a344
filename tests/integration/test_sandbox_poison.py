"""The poison suite against the real zygote sandbox: each hostile widget gets a precise
status within its timeout + 1 s, the sandbox keeps serving, and healthy widgets running
at the same time return their results quickly."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from executor.runner import RunOutcome, RunRequest
from executor.zygote_runner import ZygoteRunner
from tests.poison import POISON, widget
from tests.sandbox import zygote_runner
from tests.system.harness import free_port

TIMEOUT_S = 1.5
HEALTHY = (
    "def get_sidebar_data(context):\n    print('healthy', context['n'])\n    return {'title': 'ok', 'items': []}\n"
)


class _Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://127.0.0.1:5672/")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def redirect_port() -> Iterator[int]:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port
    server.shutdown()
    server.server_close()


@pytest.fixture
async def runner(redirect_port: int) -> AsyncIterator[ZygoteRunner]:
    async with zygote_runner(60100, 16, egress_allow=(f"127.0.0.1:{redirect_port}",)) as value:
        yield value


def _redirecting(port: int) -> str:
    return widget(f"import requests\nrequests.get('http://127.0.0.1:{port}/', timeout=1)")


async def _timed(runner: ZygoteRunner, code: str, n: int = 0) -> tuple[RunOutcome, float]:
    started = time.perf_counter()
    outcome = await runner.run(RunRequest(code=code, context={"n": n}, timeout_s=TIMEOUT_S))
    return outcome, time.perf_counter() - started


@pytest.mark.parametrize("name", list(POISON))
async def test_each_poison_gets_a_precise_status_while_healthy_jobs_run(runner: ZygoteRunner, name: str) -> None:
    body, status, error_type = POISON[name]
    poison = asyncio.create_task(_timed(runner, widget(body)))
    healthy = await asyncio.gather(*(_timed(runner, HEALTHY, n) for n in range(3)))
    outcome, elapsed = await poison
    assert (outcome.status, outcome.error_type) == (status, error_type), outcome.error_message
    assert elapsed < TIMEOUT_S + 1
    for n, (result, took) in enumerate(healthy):
        assert result.status == "ok", result.error_message
        assert result.logs == f"healthy {n}\n"
        assert took < 0.5, f"a healthy job took {took:.3f} s next to {name}"
    after, _ = await _timed(runner, HEALTHY, 9)
    assert after.status == "ok", "the sandbox keeps serving"


async def test_a_redirect_to_a_forbidden_address_is_refused(runner: ZygoteRunner, redirect_port: int) -> None:
    outcome, _ = await _timed(runner, _redirecting(redirect_port))
    assert (outcome.status, outcome.error_type) == ("error", "egress_denied"), outcome.error_message
    assert "127.0.0.1:5672" in (outcome.error_message or "")


async def test_threads_left_running_do_not_hold_the_job(runner: ZygoteRunner) -> None:
    code = widget(
        "import threading, time\n"
        "threading.Thread(target=lambda: time.sleep(60), daemon=False).start()\n"
        "return {'title': 'done', 'items': []}"
    )
    outcome, elapsed = await _timed(runner, code)
    assert outcome.status == "ok", outcome.error_message
    assert elapsed < 1.0


async def test_allow_listed_local_address_is_reachable(runner: ZygoteRunner, redirect_port: int) -> None:
    code = widget(
        f"import http.client\nc = http.client.HTTPConnection('127.0.0.1', {redirect_port}, timeout=1)\n"
        "c.request('GET', '/')\nreturn {'title': str(c.getresponse().status), 'items': []}"
    )
    outcome, _ = await _timed(runner, code)
    assert outcome.status == "ok", outcome.error_message
    assert outcome.value == {"title": "302", "items": []}
