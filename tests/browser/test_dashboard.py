"""The widget dashboard: edit and Run Test (card, raw JSON, logs, duration, validation error), and list management."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import Business, new_business, screenshot, seed_examples, sign_in
from tests.system.stack import Stack

pytestmark = pytest.mark.browser

BROKEN_RETURN = """\
def get_sidebar_data(context):
    print("building a broken card")
    return {"title": "Broken", "items": [{"title": "No sections", "badge": {"text": "x", "color": "purple"}}]}
"""


@pytest.fixture(scope="module")
def business(stack: Stack) -> Business:
    value = new_business(stack, "dash")
    seed_examples(stack, value, failing=False)
    return value


def open_widget(page: Page, widget_id: str) -> None:
    page.click(f"[data-open={widget_id}]")
    expect(page.locator(f".widget-row[data-widget-id={widget_id}]")).to_have_attribute("aria-current", "true")


def test_edit_a_widget_and_run_the_test_to_see_its_card(page: Page, business: Business) -> None:
    sign_in(page, business, "/dashboard")
    expect(page.locator(".widget-name")).to_have_text(["CRM", "Wholesale", "Warranties", "Subscriptions"])
    open_widget(page, "crm")
    code = page.locator("textarea[name=code]")
    edited = code.input_value().replace('"title": "CRM"', '"title": "CRM (edited)"')
    edited = edited.replace(
        "    account = response.json()\n", '    account = response.json()\n    print("found", account["id"])\n'
    )
    code.fill(edited)
    page.click("#save-widget")
    expect(page.locator("#save-status")).to_contain_text("Saved")
    assert business.call("GET", "/widgets/crm")["code"] == edited

    expect(page.locator("#test-form input[name=business]")).to_have_value(business.business_id)
    page.fill("#test-form input[name=conversation]", "1001")  # the public id of conv-jane
    page.click("#run-test")
    result = page.locator("#test-result")
    expect(result.locator(".status")).to_have_text("ok")
    expect(result.locator(".card .card-title")).to_have_text("CRM (edited)")
    expect(result.locator(".card .item-title")).to_have_text("Jane Cooper")
    expect(result.locator(".card .badge")).to_have_text("Premium")
    expect(result.locator(".duration")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(result.locator(".raw-json")).to_contain_text('"title": "CRM (edited)"')
    expect(result.locator(".logs")).to_contain_text("found cus_1001")
    expect(result.locator(".validation-error")).to_have_count(0)
    screenshot(page, "dashboard-test-ok")


def test_a_broken_return_shows_its_validation_error_with_the_path(page: Page, business: Business) -> None:
    sign_in(page, business, "/dashboard")
    open_widget(page, "wholesale")
    page.locator("textarea[name=code]").fill(BROKEN_RETURN)
    page.fill("#test-form input[name=conversation]", "conv-jane")
    page.click("#run-test")  # unsaved code is tested as it stands
    result = page.locator("#test-result")
    expect(result.locator(".status")).to_have_text("error")
    expect(result.locator(".test-summary")).to_contain_text("unsaved code")
    error = result.locator(".validation-error")
    expect(error).to_contain_text("Validation error")
    paths = error.locator(".error-path")
    expect(paths).to_have_text(["items[0].badge.color", "items[0].sections"])
    expect(error.locator("li").nth(1)).to_contain_text("required field is missing")
    expect(result.locator(".card .card-title")).to_have_text("Wholesale")  # the error state keeps the title
    expect(result.locator(".logs")).to_contain_text("building a broken card")
    screenshot(page, "dashboard-validation-error")
    assert "Broken" not in business.call("GET", "/widgets/wholesale")["code"]  # never saved


def test_code_that_fails_the_check_is_refused_on_save_with_its_line(page: Page, business: Business) -> None:
    sign_in(page, business, "/dashboard")
    open_widget(page, "warranties")
    page.locator("textarea[name=code]").fill("def get_sidebar_data(context):\n    return {\n")
    page.click("#save-widget")
    expect(page.locator("#save-status")).to_contain_text("Line ")
    expect(page.locator("#save-status")).to_have_class(re.compile(r"\berror\b"))
    screenshot(page, "dashboard-code-check")


def test_create_reorder_deactivate_and_delete_widgets(page: Page, business: Business) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, business, "/dashboard")
    expect(page.locator(".widget-name")).to_have_count(4)
    page.click("#new-widget")
    page.fill("#widget-form input[name=name]", "Loyalty")
    page.fill("#widget-form input[name=widget_id]", "loyalty")
    page.click("#save-widget")
    expect(page.locator(".widget-name")).to_have_text(["CRM", "Wholesale", "Warranties", "Subscriptions", "Loyalty"])

    page.click("[data-move=loyalty][data-by='-1']")
    expect(page.locator(".widget-name")).to_have_text(["CRM", "Wholesale", "Warranties", "Loyalty", "Subscriptions"])
    page.click("[data-move=crm][data-by='1']")
    expect(page.locator(".widget-name")).to_have_text(["Wholesale", "CRM", "Warranties", "Loyalty", "Subscriptions"])
    positions = [(w["widget_id"], w["position"]) for w in business.call("GET", "/widgets")]
    assert [widget_id for widget_id, _ in positions] == ["wholesale", "crm", "warranties", "loyalty", "subscriptions"]
    assert [p for _, p in positions] == sorted(p for _, p in positions)

    page.uncheck("input[data-active=loyalty]")
    expect(page.locator(".widget-row[data-widget-id=loyalty] .switch")).to_contain_text("Off")
    assert business.call("GET", "/widgets/loyalty")["active"] is False
    screenshot(page, "dashboard-list")

    open_widget(page, "loyalty")
    page.click("#delete-widget")
    expect(page.locator(".widget-row[data-widget-id=loyalty]")).to_have_count(0)
    page.click("[data-move=crm][data-by='-1']")  # back to the docs' order for the other tests
    expect(page.locator(".widget-name")).to_have_text(["CRM", "Wholesale", "Warranties", "Subscriptions"])
