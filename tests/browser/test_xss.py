"""Widget output, chat messages and links are shown as text: nothing a widget or a visitor sends runs."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import Business, new_business, screenshot, sign_in
from tests.system.stack import Stack

pytestmark = pytest.mark.browser

PAYLOAD = "<img src=x onerror=window.__xss=1>"
TITLE_PAYLOAD = "<b onmouseover=window.__xss=2>Bold?</b>"
# Field keys are stored as MongoDB keys, which must not contain ".", so this one has none.
KEY_PAYLOAD = "<svg onload=alert(1)>"

HOSTILE_WIDGET = f"""\
def get_sidebar_data(context):
    return {{
        "title": {TITLE_PAYLOAD!r},
        "items": [
            {{
                "title": "Script link",
                "link": "javascript:alert(1)",
                "subtitle": {PAYLOAD!r},
                "badge": {{"text": {PAYLOAD!r}, "color": "red"}},
                "actions": [
                    {{"label": "Evil action", "link": "javascript:window.__xss=3"}},
                    {{"label": "Data action", "link": "data:text/html,<script>alert(1)</script>"}},
                    {{"label": "Safe action", "link": "https://example.com/ok"}},
                ],
                "sections": [{{"title": {PAYLOAD!r}, "fields": {{{KEY_PAYLOAD!r}: {PAYLOAD!r}, "Note": "ok"}}}}],
            }},
            {{"title": "Safe link", "link": "https://example.com/account?id=1&x=<y>", "sections": []}},
            {{"title": "Relative link", "link": "/internal", "sections": []}},
        ],
    }}
"""


@pytest.fixture(scope="module")
def hostile(stack: Stack) -> Business:
    business = new_business(stack, "xss")
    business.call("PUT", "/conversations/conv-x", {"channel": "chat", "subject": TITLE_PAYLOAD})
    body = {"widget_id": "hostile", "name": "Hostile", "code": HOSTILE_WIDGET, "position": 1}
    business.call("POST", "/widgets", body)
    return business


def assert_inert(page: Page, scope: str) -> None:
    card = page.locator(f"{scope} .card[data-widget-id=hostile]")
    expect(card.locator(".card-title")).to_have_text(TITLE_PAYLOAD)
    expect(card.locator(".item-subtitle")).to_have_text(PAYLOAD)
    expect(card.locator(".badge")).to_have_text(PAYLOAD)
    expect(card.locator(".section-title")).to_have_text(PAYLOAD)
    expect(card.locator("dt").first).to_have_text(KEY_PAYLOAD)
    expect(card.locator("dd").first).to_have_text(PAYLOAD)
    expect(card.locator("img, b, svg, script")).to_have_count(0)

    script_title = card.locator(".item-title", has_text="Script link")
    expect(script_title).to_have_count(1)
    assert script_title.evaluate("e => e.tagName") == "SPAN"
    expect(card.locator(".item-title", has_text="Relative link")).to_have_js_property("tagName", "SPAN")
    safe = card.locator("a.item-title", has_text="Safe link")
    expect(safe).to_have_attribute("href", "https://example.com/account?id=1&x=%3Cy%3E")
    expect(safe).to_have_attribute("rel", "noopener noreferrer")

    hrefs = card.locator("[href]").evaluate_all("nodes => nodes.map(n => n.getAttribute('href'))")
    assert hrefs and all(h.startswith("https://") for h in hrefs), hrefs
    expect(card.locator("button.action", has_text="Evil action")).to_be_disabled()
    expect(card.locator("button.action", has_text="Data action")).to_be_disabled()
    expect(card.locator("a.action", has_text="Safe action")).to_have_attribute("href", "https://example.com/ok")
    card.locator("button.action", has_text="Evil action").click(force=True)
    card.locator(".badge").hover()
    assert page.evaluate("window.__xss") is None


def test_widget_output_is_text_in_the_console(page: Page, hostile: Business) -> None:
    sign_in(page, hostile, "/console")
    page.click("button[data-conversation-id=conv-x]")
    expect(page.locator(".card[data-widget-id=hostile]")).to_have_attribute("data-status", "ok")
    expect(page.locator(".conversation-head h2")).to_have_text(TITLE_PAYLOAD)
    assert_inert(page, "#cards")
    screenshot(page, "xss-console")


def test_widget_output_is_text_in_the_dashboard_test_panel(page: Page, hostile: Business) -> None:
    sign_in(page, hostile, "/dashboard")
    expect(page.locator(".widget-row[data-widget-id=hostile]")).to_have_attribute("aria-current", "true")
    page.fill("#test-form input[name=conversation]", "conv-x")
    page.click("#run-test")
    expect(page.locator("#test-result .status")).to_have_text("ok")
    assert_inert(page, "#test-result")
    screenshot(page, "xss-dashboard")


def test_chat_messages_are_text_for_the_visitor_and_the_agent(page: Page, hostile: Business) -> None:
    page.goto(f"{hostile.store_url}/demo?business={hostile.business_id}")
    page.evaluate(
        """content => document.dispatchEvent(new CustomEvent("openChatEvent",
             {detail: {type: "OPEN_OCTOCOM", message: {content, imageUrl: "javascript:alert(1)"}}}))""",
        PAYLOAD,
    )
    panel = page.locator("octocom-chat .panel")
    expect(panel.locator(".msg-customer .text")).to_have_text([PAYLOAD])
    expect(panel.locator(".status")).to_have_count(0)
    expect(panel.locator("img")).to_have_count(0)  # the javascript: image was dropped before sending

    console = page.context.new_page()
    sign_in(console, hostile, "/console")
    console.locator(".conversation-row", has_text=PAYLOAD).click()
    expect(console.locator(".message-content")).to_have_text([PAYLOAD])
    expect(console.locator(".messages img")).to_have_count(0)
    assert page.evaluate("window.__xss") is None
    assert console.evaluate("window.__xss") is None
    screenshot(console, "xss-chat-in-console")


def test_the_console_and_dashboard_pages_carry_a_strict_content_security_policy(hostile: Business) -> None:
    for path in ("/console", "/dashboard"):
        policy = httpx.get(f"{hostile.store_url}{path}").headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
