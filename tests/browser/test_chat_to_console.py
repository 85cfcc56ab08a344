"""From the demo shop's chat to the agent console: the customer's message becomes a conversation,
and opening it paints the docs' four example cards, card by card, next to a failing widget's error."""

from __future__ import annotations

import os
import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.helpers import ROOT, Business, new_business, screenshot, seed_examples, sign_in
from tests.system.stack import Stack

pytestmark = pytest.mark.browser

HELP_MESSAGE = "Hello, I need help with my order."
README_IMAGE = ROOT / "docs" / "images" / "agent-console.png"


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Business:
    business = new_business(stack, "shop")
    seed_examples(stack, business)
    return business


def chat_from_demo_page(page: Page, shop: Business) -> str:
    """Press the demo's help button; return the visitor's conversation id once the message is sent."""
    page.goto(f"{shop.store_url}/demo?business={shop.business_id}")
    page.click("#help-button")
    panel = page.locator("octocom-chat .panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".msg-customer .text")).to_have_text([HELP_MESSAGE])
    expect(panel.locator(".status")).to_have_count(0)  # sent, not "Sending…" or failed
    visitor_id = page.evaluate(f"localStorage.getItem('octocom.chat.visitor.{shop.business_id}')")
    assert isinstance(visitor_id, str)
    return f"chat-{visitor_id}"


def identify_customer(shop: Business, conversation_id: str) -> None:
    """What the help desk does once it knows who the visitor is: link the conversation to Jane."""
    conversation = shop.call("GET", f"/conversations/{conversation_id}")
    fields = {key: conversation[key] for key in ("channel", "subject", "status", "attributes")}
    shop.call("PUT", f"/conversations/{conversation_id}", {**fields, "customer_id": "cus-jane"})


def test_a_demo_chat_message_opens_in_the_console_with_the_live_sidebar(page: Page, shop: Business) -> None:
    conversation_id = chat_from_demo_page(page, shop)
    screenshot(page, "demo-chat-opened")
    identify_customer(shop, conversation_id)

    console = page.context.new_page()
    sign_in(console, shop, "/console")
    row = console.locator(f"button[data-conversation-id='{conversation_id}']")
    expect(row).to_be_visible()
    expect(row.locator(".row-subject")).to_have_text(HELP_MESSAGE)
    row.click()

    expect(console.locator(".conversation-head h2")).to_have_text(HELP_MESSAGE)
    expect(console.locator(".message-customer .message-content")).to_have_text([HELP_MESSAGE])
    cards = console.locator("#cards > .card")
    # The slow, failing widget is still a skeleton while the four examples are already painted.
    expect(console.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "pending")
    expect(console.locator(".card[data-status=ok]")).to_have_count(4)
    expect(console.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "pending")
    screenshot(console, "console-cards-while-a-widget-is-pending")

    expect(console.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "error")
    expect(cards.locator(".card-title")).to_have_text(["CRM", "Wholesale", "Warranties", "Subscriptions", "Inventory"])
    failed = console.locator(".card[data-widget-id=inventory]")
    expect(failed.locator(".card-problem")).to_contain_text("Failed")
    expect(failed.locator(".problem-type")).to_have_text("exception")
    expect(failed.locator(".problem-message")).to_contain_text("RuntimeError: inventory API is down")

    crm = console.locator(".card[data-widget-id=crm]")
    expect(crm.locator(".item-title")).to_have_text("Jane Cooper")
    expect(crm.locator(".item-subtitle")).to_have_text("jane@example.com")
    expect(crm.locator(".badge")).to_have_text("Premium")
    expect(crm.locator(".badge")).to_have_attribute("data-color", "green")
    expect(crm.locator(".section-title")).to_have_text("Account details")
    expect(crm.locator(".field")).to_have_text(
        ["Account IDcus_1001", "TierPremium", "Lifetime value$4820", "Member since2021-03-14"]
    )

    wholesale = console.locator(".card[data-widget-id=wholesale]")
    expect(wholesale.locator(".section-title")).to_have_text(["Account", "Contact"])
    action = wholesale.locator("a.action")
    expect(action).to_have_text("View in ERP")
    expect(action).to_have_attribute("href", "https://erp.example.com/accounts/wa_5521")
    expect(action).to_have_attribute("target", "_blank")
    expect(action).to_have_attribute("rel", "noopener noreferrer")

    warranties = console.locator(".card[data-widget-id=warranties]")
    expect(warranties.locator(".badge")).to_have_text(["Active", "Expired"])
    expect(warranties.locator(".badge").first).to_have_attribute("data-color", "green")
    expect(warranties.locator(".badge").nth(1)).to_have_attribute("data-color", "gray")

    subscriptions = console.locator(".card[data-widget-id=subscriptions]")
    expect(subscriptions.locator(".badge")).to_have_text(["Active", "Past_due"])
    expect(subscriptions.locator(".badge").nth(1)).to_have_attribute("data-color", "yellow")

    console.wait_for_function("window.sidebarTimings.length === 1")
    timings = console.evaluate("window.sidebarTimings")
    assert [t["conversation_id"] for t in timings] == [conversation_id]
    assert 0 < timings[0]["first_card_ms"] <= timings[0]["complete_ms"]
    expect(console.locator("#timings")).to_contain_text("first card")
    screenshot(console, "console-with-sidebar")
    console.set_viewport_size({"width": 1440, "height": 1780})  # tall enough for the whole sidebar
    console.mouse.move(0, 0)
    shot = screenshot(console, "agent-console")
    if os.environ.get("REFRESH_README_IMAGE") == "1":  # `make readme-image`; a test run leaves docs/ alone
        shutil.copyfile(shot, README_IMAGE)


def test_items_are_collapsible_and_only_sections_marked_collapsible_are(page: Page, shop: Business) -> None:
    sign_in(page, shop, "/console")
    page.click("button[data-conversation-id=conv-jane]")
    expect(page.locator(".card[data-status=ok]")).to_have_count(4)

    crm_item = page.locator(".card[data-widget-id=crm] .item")
    toggle = crm_item.locator(".item-head .toggle")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(crm_item.locator(".fields")).to_be_visible()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(crm_item.locator(".item-body")).to_be_hidden()
    expect(crm_item.locator(".item-title")).to_be_visible()  # the heading stays
    screenshot(page, "console-item-collapsed")
    toggle.click()
    expect(crm_item.locator(".fields")).to_be_visible()

    plan = page.locator(".card[data-widget-id=subscriptions] .item").first
    usage = plan.locator(".section[data-collapsible=true]")
    expect(usage.locator(".section-title")).to_have_text("Usage")
    expect(plan.locator(".section[data-collapsible=false] .toggle")).to_have_count(0)
    usage.locator(".toggle").click()
    expect(usage.locator(".fields")).to_be_hidden()
    expect(plan.locator(".section[data-collapsible=false] .fields")).to_be_visible()
    screenshot(page, "console-section-collapsed")
    usage.locator(".toggle").click()
    expect(usage.locator(".fields")).to_be_visible()


def test_refresh_runs_the_widgets_again(page: Page, shop: Business) -> None:
    sign_in(page, shop, "/console")
    page.click("button[data-conversation-id=conv-jane]")
    expect(page.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "error")
    page.click("#refresh")
    expect(page.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "pending")
    expect(page.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "error")
    page.wait_for_function("window.sidebarTimings.length === 2")
    screenshot(page, "console-refreshed")


def test_a_refused_stream_is_reopened_with_a_fresh_token(page: Page, shop: Business) -> None:
    streams: list[str] = []
    tokens: list[str] = []

    def stream(route: Route) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:  # as an expired token is answered
            route.fulfill(status=401, content_type="application/json", body='{"detail": "stream token expired"}')
        else:
            route.continue_()

    page.route("**/stream?*", stream)
    page.on("request", lambda request: tokens.append(request.url) if request.url.endswith("/stream-tokens") else None)
    sign_in(page, shop, "/console")
    page.click("button[data-conversation-id=conv-jane]")
    expect(page.locator("#stream-state")).to_have_text("● live")
    expect(page.locator(".card[data-status=ok]")).to_have_count(4)
    expect(page.locator(".card[data-widget-id=inventory]")).to_have_attribute("data-status", "error")
    assert len(streams) == 2
    assert len(tokens) == 2, "the refused token was replaced before reconnecting"
    assert all("token" in parse_qs(urlsplit(url).query) for url in streams)
    screenshot(page, "console-stream-reopened")
