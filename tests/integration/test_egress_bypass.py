"""The bypass corpus against the real zygote sandbox, as root (a uid per slot): no route
reaches a listener the test owns, each refusal is reported as egress_denied naming the
address, and allowed traffic still flows through requests, httpx, asyncio and sockets.
The same corpus runs as a non-root executor in tests/system/test_nonroot_executor.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from executor.runner import RunRequest
from executor.zygote_runner import ZygoteRunner
from tests.egress_corpus import ALLOWED, BYPASSES, Listeners, listeners
from tests.sandbox import zygote_runner

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def owned() -> Iterator[Listeners]:
    with listeners() as value:
        yield value


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def runner(owned: Listeners) -> AsyncIterator[ZygoteRunner]:
    targets = owned.targets
    async with zygote_runner(
        60700, 4, connect_ports=targets.egress_ports(), egress_allow=targets.egress_allow()
    ) as value:
        yield value


@pytest.mark.parametrize("name", list(BYPASSES))
async def test_no_bypass_reaches_a_listener_of_the_test(runner: ZygoteRunner, owned: Listeners, name: str) -> None:
    body, error_type, named = BYPASSES[name]
    targets = owned.targets
    outcome = await runner.run(RunRequest(code=targets.code(body), context={}, timeout_s=5))
    assert owned.reached() == [], f"{name} reached a listener"
    if error_type is None:
        assert outcome.status == "ok", (outcome.error_type, outcome.error_message, outcome.logs)
    else:
        assert (outcome.status, outcome.error_type) == ("error", error_type), (outcome.error_message, outcome.logs)
        assert targets.text(named) in (outcome.error_message or ""), outcome.error_message


@pytest.mark.parametrize("name", list(ALLOWED))
async def test_allowed_traffic_flows(runner: ZygoteRunner, owned: Listeners, name: str) -> None:
    outcome = await runner.run(RunRequest(code=owned.targets.code(ALLOWED[name]), context={}, timeout_s=5))
    assert outcome.status == "ok", (outcome.error_type, outcome.error_message, outcome.logs)
    assert outcome.value == {"title": "200", "items": []}
    assert owned.reached() == []


async def test_a_stopped_widget_keeps_its_status_and_its_message_names_the_refusal(
    runner: ZygoteRunner, owned: Listeners
) -> None:
    body = (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', $tcp), 2)\nexcept OSError:\n    pass\n"
        "while True:\n    pass"
    )
    outcome = await runner.run(RunRequest(code=owned.targets.code(body), context={}, timeout_s=1))
    assert outcome.status == "timeout"
    assert owned.targets.text("before that, connection to 127.0.0.1:$tcp is not allowed") in (
        outcome.error_message or ""
    )
    assert owned.reached() == []


async def test_tls_wrapped_before_connect_reaches_an_allowed_server(runner: ZygoteRunner, owned: Listeners) -> None:
    """The allowed server speaks plain HTTP, so the handshake fails: after the connection was made."""
    body = (
        "import socket, ssl\ns = ssl.create_default_context().wrap_socket(socket.socket(), server_hostname='x')\n"
        "s.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', $allowed))\nexcept ssl.SSLError as exc:\n"
        "    return {'title': type(exc).__name__, 'items': []}"
    )
    outcome = await runner.run(RunRequest(code=owned.targets.code(body), context={}, timeout_s=5))
    assert outcome.status == "ok", (outcome.error_type, outcome.error_message, outcome.logs)
    assert outcome.value == {"title": "SSLError", "items": []}
    assert owned.reached() == []
