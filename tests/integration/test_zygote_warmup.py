"""Children inherit HTTP libraries the zygote has already used once, and nothing of that use:
no thread left running (nor the malloc arena a thread leaves), no ``.netrc`` read, and
nothing of the answering side, which runs in a process of its own."""

from __future__ import annotations

from executor.runner import RunRequest
from tests.poison import widget
from tests.sandbox import zygote_runner

PROBE = widget(
    """
import sys, threading
return {
    "title": "probe",
    "items": [],
    "warm": sorted(m for m in ("netrc", "urllib3.connectionpool", "http.client", "httpcore") if m in sys.modules),
    "threads": threading.active_count(),
    "cryptography": "cryptography" in sys.modules,
    "netrc_read": any(type(o).__name__ == "netrc" for o in __import__("gc").get_objects()),
}
"""
)


async def test_children_start_with_warm_http_libraries_and_nothing_left_of_the_warm_up() -> None:
    async with zygote_runner(60700, 2) as runner:
        outcome = await runner.run(RunRequest(code=PROBE, context={}, timeout_s=10))
    assert outcome.status == "ok", (outcome.error_type, outcome.error_message, outcome.logs)
    assert isinstance(outcome.value, dict)
    assert outcome.value["warm"] == ["http.client", "httpcore", "netrc", "urllib3.connectionpool"]
    assert outcome.value["threads"] == 1
    assert outcome.value["netrc_read"] is False
    assert outcome.value["cryptography"] is False, "the throwaway certificate is made outside the zygote"
