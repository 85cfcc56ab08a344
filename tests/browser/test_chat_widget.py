"""The embeddable chat widget on a customer's page: openChatEvent, early events, isolation."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import ConsoleLog
from tests.browser.helpers import Business, new_business, screenshot
from tests.system.stack import Stack

pytestmark = pytest.mark.browser

# The one-line snippet documented in widget.js and used by the demo page.
EARLY_SNIPPET = (
    '<script>(function(d){var q=d.__ocq=d.__ocq||[];d.addEventListener("openChatEvent",function(e)'
    "{if(q.push&&d.__ocq===q)q.push(e.detail)})})(document)</script>"
)


@pytest.fixture(scope="module")
def site(stack: Stack) -> Business:
    return new_business(stack, "site")


def serve_host_page(page: Page, site: Business, body: str, head: str = "") -> str:
    """A customer's page on the store's origin (intercepted, never hitting the store); returns its URL."""
    url = f"{site.store_url}/customer-site-{uuid.uuid4().hex[:8]}"
    html = f"<!doctype html><html><head><meta charset=utf-8>{head}</head><body>{body}</body></html>"

    def fulfill(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=html)

    page.route(url, fulfill)
    return url


def widget_tag(site: Business) -> str:
    return f'<script src="{site.store_url}/chat/widget.js" data-business="{site.business_id}" async></script>'


def test_events_dispatched_before_the_script_loads_are_not_lost(
    page: Page, site: Business, console_log: ConsoleLog
) -> None:
    body = f"""
      <h1>Early bird</h1>
      <script>
        function chat(detail) {{ document.dispatchEvent(new CustomEvent("openChatEvent", {{detail: detail}})); }}
        chat({{type: "OPEN_SOMETHING_ELSE", message: {{content: "ignored"}}}});
        chat({{type: "OPEN_OCTOCOM", message: {{content: "First, before the widget loaded"}}}});
        chat({{type: "OPEN_OCTOCOM",
               message: {{content: "Second, with a picture", imageUrl: "{site.store_url}/static/img/tent.svg"}}}});
        setTimeout(function () {{
          var s = document.createElement("script");
          s.src = "{site.store_url}/chat/widget.js";
          s.dataset.business = "{site.business_id}";
          document.body.append(s);
        }}, 300);
      </script>"""
    page.goto(serve_host_page(page, site, body, head=EARLY_SNIPPET))
    panel = page.locator("octocom-chat .panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".msg-customer .text")).to_have_text(
        ["First, before the widget loaded", "Second, with a picture"]
    )
    expect(panel.locator(".msg-customer img.image")).to_have_attribute("src", f"{site.store_url}/static/img/tent.svg")
    expect(panel.locator(".status")).to_have_count(0)
    assert any("OPEN_OCTOCOM" in w and "OPEN_SOMETHING_ELSE" in w for w in console_log.warnings())
    assert page.evaluate("Object.isFrozen(document.__ocq) && !Array.isArray(document.__ocq)")
    screenshot(page, "chat-early-events")

    # The conversation is the visitor's, and holds both messages in order.
    visitor_id = page.evaluate(f"localStorage.getItem('octocom.chat.visitor.{site.business_id}')")
    assert re.fullmatch(r"[0-9a-f]{32}", visitor_id)
    messages = site.call("GET", f"/conversations/chat-{visitor_id}/messages")
    assert [(m["author"], m["content"]) for m in messages] == [
        ("customer", "First, before the widget loaded"),
        ("customer", "Second, with a picture"),
    ]
    assert messages[1]["image_url"] == f"{site.store_url}/static/img/tent.svg"

    # Another page of the site keeps the visitor: the panel shows the history, and its own input sends more.
    page.goto(serve_host_page(page, site, "<h1>Another page</h1>", head=widget_tag(site)))
    page.locator("octocom-chat .launcher").click()
    expect(panel.locator(".msg-customer .text")).to_have_count(2)
    panel.locator(".input").fill("Typed in the panel")
    panel.locator(".send").click()
    expect(panel.locator(".msg-customer .text")).to_have_text(
        ["First, before the widget loaded", "Second, with a picture", "Typed in the panel"]
    )
    expect(panel.locator(".status")).to_have_count(0)
    assert len(site.call("GET", f"/conversations/chat-{visitor_id}/messages")) == 3


def test_a_wrong_type_is_ignored_and_a_message_without_content_only_opens(
    page: Page, site: Business, console_log: ConsoleLog
) -> None:
    page.goto(serve_host_page(page, site, "<h1>Shop</h1>", head=widget_tag(site)))
    launcher = page.locator("octocom-chat .launcher")
    expect(launcher).to_be_visible()
    panel = page.locator("octocom-chat .panel")

    page.evaluate("""document.dispatchEvent(new CustomEvent("openChatEvent", {detail: {type: "open_octocom"}}))""")
    page.evaluate("""document.dispatchEvent(new CustomEvent("openChatEvent"))""")
    expect(panel).to_be_hidden()
    wrong = [w for w in console_log.warnings() if "OPEN_OCTOCOM" in w]
    assert len(wrong) == 2, console_log.warnings()

    page.evaluate(
        """document.dispatchEvent(new CustomEvent("openChatEvent",
             {detail: {type: "OPEN_OCTOCOM", message: {imageUrl: "https://example.com/a.png"}}}))"""
    )
    expect(panel).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    assert any("no content" in w for w in console_log.warnings())
    expect(panel.locator(".msg")).to_have_count(0)

    page.locator("octocom-chat .close").click()
    expect(panel).to_be_hidden()
    page.evaluate("""document.dispatchEvent(new CustomEvent("openChatEvent", {detail: {type: "OPEN_OCTOCOM"}}))""")
    expect(panel).to_be_visible()  # without a message it only opens
    expect(panel.locator(".msg")).to_have_count(0)
    screenshot(page, "chat-opened-without-message")


def test_the_widget_adds_no_globals_and_styles_do_not_leak_either_way(page: Page, site: Business) -> None:
    head = """<style>
      * { color: rgb(255, 0, 0) !important; font-family: serif !important; }
      button { background: rgb(0, 255, 0) !important; }
      .launcher, .panel { width: 3px; }
    </style>"""
    body = f"""
      <p class="launcher" id="host-launcher">The host's own .launcher</p>
      <p class="text" id="host-text">The host's own .text</p>
      <script>
        var globalsBefore = Object.getOwnPropertyNames(window);
        var s = document.createElement("script");
        s.src = "{site.store_url}/chat/widget.js";
        s.dataset.business = "{site.business_id}";
        s.onload = function () {{
          document.body.dataset.newGlobals = Object.getOwnPropertyNames(window)
            .filter(function (name) {{ return globalsBefore.indexOf(name) === -1; }}).join(",");
        }};
        document.head.append(s);
      </script>"""
    page.goto(serve_host_page(page, site, body, head=head))
    expect(page.locator("body[data-new-globals]")).to_have_count(1)
    assert page.get_attribute("body", "data-new-globals") == ""

    launcher = page.locator("octocom-chat .launcher")
    launcher.click()
    input_ = page.locator("octocom-chat .input")
    expect(input_).to_be_visible()
    page.mouse.move(0, 0)  # not hovering the launcher
    style = launcher.evaluate("e => getComputedStyle(e).backgroundColor")
    assert style == "rgb(48, 86, 211)"
    assert input_.evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    title = page.locator("octocom-chat .title")
    assert title.evaluate("e => getComputedStyle(e).fontFamily") != "serif"
    # The widget's rules (.launcher is 56 px wide, .text pre-wraps) never reach the host's elements.
    assert page.locator("#host-launcher").evaluate("e => getComputedStyle(e).width") == "3px"
    assert page.locator("#host-text").evaluate("e => getComputedStyle(e).whiteSpace") == "normal"
    screenshot(page, "chat-style-isolation")


def test_the_demo_shop_search_and_failed_checkout_open_the_chat(page: Page, site: Business) -> None:
    page.goto(f"{site.store_url}/demo?business={site.business_id}")
    panel = page.locator("octocom-chat .panel")
    page.fill("#site-search input[name=q]", "Do you ship tents to Canada?")
    page.press("#site-search input[name=q]", "Enter")
    expect(panel.locator(".msg-customer .text")).to_have_text(["Do you ship tents to Canada?"])
    page.locator("octocom-chat .close").click()
    expect(panel).to_be_hidden()

    page.click("button.add[data-name='Summit 2 Tent']")
    page.click("#checkout")
    expect(page.locator("#checkout-error")).to_contain_text("Checkout failed")
    expect(panel).to_be_visible()
    expect(panel.locator(".msg-customer .text")).to_have_text(
        ["Do you ship tents to Canada?", "I ran into an issue during checkout."]
    )
    expect(panel.locator(".status")).to_have_count(0)
    screenshot(page, "demo-checkout-error")
