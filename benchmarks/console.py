"""Agent console benchmark: a click on a conversation -> first card painted, and -> complete sidebar painted.

Starts its own stack (mock API, store, executor, orchestrator) against
RABBITMQ_URL and MONGODB_URL in a throw-away vhost and database, seeds the demo
business (the docs' four example widgets against the mock API), signs in to
``/console`` in headless Debian chromium and clicks conversations in turn
(Jane's and Bob's, so every click opens a new stream and runs all four widgets).
The console itself measures each click (``window.sidebarTimings``: from the
click handler's ``performance.now()`` to the frame after the first card, and
after the last card, were put on screen); this script collects them and prints
machine facts and percentiles, and writes the same as JSON to
``benchmarks/results/console-<timestamp>.json``.

    .venv/bin/python benchmarks/console.py --clicks 20
    .venv/bin/python benchmarks/console.py --store http://127.0.0.1:8000 --business demo --key sk_...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from playwright.sync_api import Page, sync_playwright

from demo.seed import BUSINESS_ID, Store, seed

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CONVERSATIONS = ("conv-1001", "conv-1002")  # Jane (every widget has data) and Bob (thinner records)
CLICK_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Target:
    store_url: str
    business_id: str
    api_key: str


@contextmanager
def started_stack() -> Iterator[Target]:
    """The system tests' stack (real processes, per-run vhost and database), seeded with the demo business."""
    from tests.infra import provision_infra
    from tests.system.stack import ADMIN_KEY, start_stack

    with provision_infra() as infra:
        stack = start_stack(infra, orchestrators=1)
        try:
            with httpx.Client(base_url=stack.store_url, timeout=30) as client:
                key = seed(Store(client, ADMIN_KEY), stack.mock_api_url)
            yield Target(stack.store_url, BUSINESS_ID, key)
        finally:
            stack.stop()


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as lines:
            return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix)), None)
    except OSError:
        return None


def machine_facts(browser_version: str) -> dict[str, Any]:
    memory_kb = _first_line("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": _first_line("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "memory_gib": round(int(memory_kb.split()[0]) / 1024 / 1024, 1) if memory_kb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "chromium": browser_version,
    }


def sign_in(page: Page, target: Target) -> None:
    page.goto(f"{target.store_url}/console")
    page.fill("input[name=business-id]", target.business_id)
    page.fill("input[name=api-key]", target.api_key)
    page.click("#signin button[type=submit]")
    page.wait_for_selector(f"button[data-conversation-id={CONVERSATIONS[0]}]")


def click_and_measure(page: Page, conversation_id: str, done: int) -> dict[str, Any]:
    page.click(f"button[data-conversation-id={conversation_id}]")
    page.wait_for_function(f"window.sidebarTimings.length > {done}", timeout=CLICK_TIMEOUT_MS)
    timing: dict[str, Any] = page.evaluate(f"window.sidebarTimings[{done}]")
    return timing


def measure(target: Target, clicks: int, warmup: int) -> tuple[list[dict[str, Any]], str]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Playwright's wait_for_function evaluates a string, which the console's CSP forbids.
            context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
            page = context.new_page()
            sign_in(page, target)
            timings = []
            for n in range(warmup + clicks):
                timing = click_and_measure(page, CONVERSATIONS[n % len(CONVERSATIONS)], n)
                if n >= warmup:
                    timings.append(timing)
            return timings, browser.version
        finally:
            browser.close()


def summarize(timings: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    summary = {}
    for key in ("first_card_ms", "complete_ms"):
        values = sorted(int(t[key]) for t in timings)
        summary[key] = {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "min": values[0],
            "max": values[-1],
        }
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clicks", type=int, default=20, help="measured clicks (default 20, at least 10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured clicks first (default 2)")
    parser.add_argument("--store", help="measure a running store instead of starting one (with --business, --key)")
    parser.add_argument("--business", default=BUSINESS_ID)
    parser.add_argument("--key", help="the business's API key (with --store)")
    args = parser.parse_args(argv)
    if args.clicks < 10:
        parser.error("--clicks must be at least 10")
    if args.store and not args.key:
        parser.error("--store needs --key")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"console benchmark: Debian's chromium is missing at {CHROMIUM}: apt-get install -y chromium")
        return 1
    if args.store:
        timings, version = measure(Target(args.store, args.business, args.key), args.clicks, args.warmup)
        mode = "attached"
    else:
        with started_stack() as target:
            timings, version = measure(target, args.clicks, args.warmup)
        mode = "started"
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
    summary = summarize(timings)
    facts = machine_facts(version)
    report: dict[str, Any] = {
        "benchmark": "console",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git.stdout.strip() or None,
        "mode": mode,
        "clicks": len(timings),
        "widgets_per_sidebar": 4,
        "machine": facts,
        "summary": summary,
        "timings": timings,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"console-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"machine: {facts['cpu_model']}, {facts['cpu_count']} CPUs, {facts['memory_gib']} GiB")
    print(f"         {facts['platform']}, Python {facts['python']}, Chromium {version} (headless)")
    print(f"{len(timings)} clicks on the console ({mode} stack), 4 example widgets against the mock API:")
    for key, label in (("first_card_ms", "click -> first card"), ("complete_ms", "click -> complete sidebar")):
        s = summary[key]
        print(f"  {label:<26} p50 {s['p50']:>5} ms   p90 {s['p90']:>5} ms   (min {s['min']}, max {s['max']})")
    print(f"written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
