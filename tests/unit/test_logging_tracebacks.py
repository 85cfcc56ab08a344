"""Logged tracebacks never carry local variables, which may hold secrets."""

from __future__ import annotations

import io
import json
import sys

import structlog

from shared.logging import configure_logging


def test_an_exception_log_does_not_print_the_locals_of_its_frames() -> None:
    captured = io.StringIO()
    stdout, sys.stdout = sys.stdout, captured
    try:
        configure_logging("test")
        secret_value = "plaintext-canary-1234"  # noqa: F841 - a local the traceback must not show
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            structlog.get_logger("test").exception("failed")
    finally:
        sys.stdout = stdout
        structlog.reset_defaults()
    line = json.loads(captured.getvalue().strip().splitlines()[-1])
    assert line["exception"][0]["exc_value"] == "boom"
    assert "plaintext-canary-1234" not in captured.getvalue()
