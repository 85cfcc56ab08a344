"""Browser tests: Debian's chromium (never a downloaded browser) driving the pages the real store serves.

One stack (store, executor, orchestrators, demo API) serves the whole package;
each test gets a fresh browser context, whose console messages it can read.
Pages run with their Content-Security-Policy bypassed, so the tests prove the
rendering itself is inert, not merely that the policy would block a script.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserType, ConsoleMessage, Page, ViewportSize, sync_playwright

from tests.infra import Infra
from tests.system.stack import Stack, start_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


def launch_chromium(chromium: BrowserType) -> Browser:
    """Launch Debian's chromium; a clear failure, never a skip, when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium", pytrace=False)
    return chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="package")
def stack(infra: Infra) -> Iterator[Stack]:
    value = start_stack(infra, orchestrators=1)
    yield value
    value.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright.chromium)
        yield launched
        launched.close()


class ConsoleLog:
    """Console messages of every page in a test's browser context."""

    def __init__(self) -> None:
        self.messages: list[ConsoleMessage] = []
        self.page_errors: list[str] = []

    def warnings(self) -> list[str]:
        return [m.text for m in self.messages if m.type == "warning"]


@pytest.fixture
def console_log() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser: Browser, console_log: ConsoleLog) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    context.on("console", lambda message: console_log.messages.append(message))
    context.on("weberror", lambda error: console_log.page_errors.append(str(error.error)))
    value = context.new_page()
    yield value
    context.close()
    assert console_log.page_errors == [], f"uncaught errors in the page: {console_log.page_errors}"
