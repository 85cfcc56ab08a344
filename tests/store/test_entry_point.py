"""Settings and ``python -m store``: a clear start-up error, serving, and a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from benchmarks.harness import free_port
from store.settings import StoreSettings
from tests.infra import Infra
from tests.store.conftest import ADMIN_KEY

STORE_ENV_PREFIXES = ("STORE_", "RABBITMQ_", "MONGODB_")


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STORE_ENV_PREFIXES)}
    return {**env, **overrides}


def test_the_admin_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORE_ADMIN_KEY", raising=False)
    with pytest.raises(ValidationError, match="store_admin_key"):
        StoreSettings()


def test_a_short_admin_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be at least 16 characters long"):
        StoreSettings(store_admin_key="short")


def test_settings_come_from_upper_cased_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("STORE_PORT", "8123")
    monkeypatch.setenv("STORE_MAX_BODY_BYTES", "4096")

    settings = StoreSettings()

    assert (settings.store_port, settings.store_max_body_bytes) == (8123, 4096)
    assert ADMIN_KEY not in repr(settings)


def test_starting_without_an_admin_key_exits_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "store"], env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "store: invalid settings: STORE_ADMIN_KEY: required field is missing"


def test_a_short_admin_key_error_does_not_echo_the_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "store"],
        env=clean_env(STORE_ADMIN_KEY="tiny-secret"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "STORE_ADMIN_KEY: must be at least 16 characters long" in result.stderr
    assert "tiny-secret" not in result.stderr


@pytest.fixture
def store_process(infra: Infra) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = clean_env(**infra.env(), STORE_ADMIN_KEY=ADMIN_KEY, STORE_PORT=str(port), LOG_LEVEL="info")
    process = subprocess.Popen(
        [sys.executable, "-m", "store"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_python_m_store_serves_and_stops_cleanly_on_sigterm(store_process: tuple[subprocess.Popen[str], int]) -> None:
    process, port = store_process
    assert process.stdout is not None
    for line in process.stdout:
        if '"store.ready"' in line:
            break
    else:
        pytest.fail(f"the store exited before it was ready (exit code {process.wait(timeout=30)})")

    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    process.send_signal(signal.SIGTERM)
    output = process.stdout.read()

    assert health.json() == {"status": "ok"}
    assert process.wait(timeout=60) == 0
    assert '"store.closed"' in output
    assert ADMIN_KEY not in output
