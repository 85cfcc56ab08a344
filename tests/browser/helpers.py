"""What the browser tests share: seeding a business over HTTP, signing in, screenshots, widget code."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from demo.examples import EXAMPLES, load_example
from demo.mock_api import JANE
from tests.system.stack import ADMIN_KEY, Stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

FAILING_WIDGET = """\
import time

def get_sidebar_data(context):
    time.sleep(1.5)
    raise RuntimeError("inventory API is down")
"""


@dataclass(frozen=True)
class Business:
    business_id: str
    api_key: str
    store_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.store_url}/v1/businesses/{self.business_id}",
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with self.client() as client:
            response = client.request(method, path, json=body)
        assert response.is_success, f"{method} {path} -> {response.status_code}: {response.text}"
        return response.json() if response.content else None


def new_business(stack: Stack, prefix: str = "biz") -> Business:
    business_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{stack.store_url}/v1/businesses",
        json={"business_id": business_id, "name": f"Outfitters {business_id[-4:]}"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return Business(business_id, response.json()["api_key"], stack.store_url)


def seed_examples(stack: Stack, business: Business, *, failing: bool = True) -> None:
    """Jane Cooper, her conversation ``conv-jane``, the docs' four examples and (optionally) a slow failing widget."""
    business.call("PUT", "/customers/cus-jane", {"email": JANE, "name": "Jane Cooper"})
    business.call(
        "PUT",
        "/conversations/conv-jane",
        {"public_id": "1001", "customer_id": "cus-jane", "channel": "email", "subject": "Tent pole snapped"},
    )
    for example in EXAMPLES:
        code = load_example(example.widget_id, stack.mock_api_url)
        body = {"widget_id": example.widget_id, "name": example.name, "code": code, "position": example.position}
        business.call("POST", "/widgets", body)
    if failing:
        body = {"widget_id": "inventory", "name": "Inventory", "code": FAILING_WIDGET, "position": 50}
        business.call("POST", "/widgets", body)


def sign_in(page: Page, business: Business, path: str) -> None:
    page.goto(f"{business.store_url}{path}")
    page.fill("input[name=business-id]", business.business_id)
    page.fill("input[name=api-key]", business.api_key)
    page.click("#signin button[type=submit]")
    expect(page.locator("#app")).to_be_visible()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
