"""The docs' four example widgets, and the cards they produce against the mock API.

The files under ``demo/widgets/`` are the docs' code byte for byte; the only
change a deployment makes is the API host, done here by ``load_example``.
``expected_cards`` rebuilds, from ``DEMO_CUSTOMERS``, what each example returns,
so system tests can assert a whole sidebar without running the examples themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.mock_api import DEMO_CUSTOMERS
from shared.contracts.widget_output import validate_widget_output

DOCS_API_BASE = "https://api.example.com"
WIDGETS_DIR = Path(__file__).resolve().parent / "widgets"

Card = dict[str, Any]


@dataclass(frozen=True)
class Example:
    widget_id: str
    name: str
    filename: str
    position: int

    @property
    def path(self) -> Path:
        return WIDGETS_DIR / self.filename


EXAMPLES: tuple[Example, ...] = (
    Example("crm", "CRM", "crm.py", 10),
    Example("wholesale", "Wholesale", "wholesale.py", 20),
    Example("warranties", "Warranties", "warranties.py", 30),
    Example("subscriptions", "Subscriptions", "subscriptions.py", 40),
)
"""In the docs' order, which is also their sidebar order."""


def find_example(widget_id: str) -> Example:
    for example in EXAMPLES:
        if example.widget_id == widget_id:
            return example
    raise KeyError(f"no example widget {widget_id!r}; known: {', '.join(e.widget_id for e in EXAMPLES)}")


def load_example(widget_id: str, api_base: str) -> str:
    """The example's code with the docs' API host replaced by ``api_base``."""
    code = find_example(widget_id).path.read_text(encoding="utf-8")
    if DOCS_API_BASE not in code:
        raise ValueError(f"{widget_id}: the docs' API host {DOCS_API_BASE} is missing from the example")
    return code.replace(DOCS_API_BASE, api_base.rstrip("/"))


def _crm_items(account: dict[str, Any]) -> list[Card]:
    return [
        {
            "title": account["name"],
            "subtitle": account["email"],
            "badge": {"text": account["tier"], "color": "green" if account["tier"] == "Premium" else "gray"},
            "sections": [
                {
                    "title": "Account details",
                    "fields": {
                        "Account ID": account["id"],
                        "Tier": account["tier"],
                        "Lifetime value": f"${account['ltv']}",
                        "Member since": account["createdAt"],
                    },
                },
            ],
        },
    ]


def _wholesale_items(account: dict[str, Any]) -> list[Card]:
    return [
        {
            "title": account["companyName"],
            "badge": {"text": account["status"], "color": "green" if account["status"] == "Active" else "red"},
            "actions": [{"label": "View in ERP", "link": f"https://erp.example.com/accounts/{account['id']}"}],
            "sections": [
                {
                    "title": "Account",
                    "fields": {
                        "Pricing tier": account["pricingTier"],
                        "Credit limit": f"${account['creditLimit']}",
                        "Outstanding balance": f"${account['balance']}",
                        "Payment terms": account["paymentTerms"],
                    },
                },
                {
                    "title": "Contact",
                    "fields": {
                        "Account manager": account.get("accountManager", "—"),
                        "Phone": account.get("phone", "—"),
                    },
                },
            ],
        },
    ]


def _warranty_items(warranties: list[dict[str, Any]]) -> list[Card]:
    return [
        {
            "title": w["productName"],
            "subtitle": f"Purchased {w['purchaseDate']}",
            "badge": {"text": "Active" if w["isActive"] else "Expired", "color": "green" if w["isActive"] else "gray"},
            "sections": [
                {
                    "title": "Warranty details",
                    "fields": {
                        "Type": w["warrantyType"],
                        "Expires": w["expiresAt"],
                        "Serial number": w.get("serialNumber", "—"),
                    },
                },
            ],
        }
        for w in warranties[:5]
    ]


def _subscription_items(subs: list[dict[str, Any]]) -> list[Card]:
    return [
        {
            "title": sub["planName"],
            "badge": {
                "text": sub["status"].capitalize(),
                "color": "green" if sub["status"] == "active" else "yellow",
            },
            "sections": [
                {
                    "title": "Plan",
                    "fields": {
                        "Price": f"${sub['price']}/mo",
                        "Next billing": sub["nextBillingDate"],
                        "Started": sub["startDate"],
                    },
                },
                {
                    "title": "Usage",
                    "collapsible": True,
                    "fields": {
                        "API calls": f"{sub['usage']['apiCalls']} / {sub['usage']['limit']}",
                        "Storage": sub["usage"]["storage"],
                    },
                },
            ],
        }
        for sub in subs
    ]


_ITEM_BUILDERS: dict[str, tuple[str, Callable[[Any], list[Card]]]] = {
    "crm": ("crm", _crm_items),
    "wholesale": ("wholesale", _wholesale_items),
    "warranties": ("warranties", _warranty_items),
    "subscriptions": ("subscriptions", _subscription_items),
}


def expected_cards(email: str | None) -> dict[str, Card]:
    """widget_id -> exactly what the example returns for a customer with ``email``
    (``None``: no customer or no email), against the mock API."""
    record = DEMO_CUSTOMERS.get(email.lower(), {}) if email else {}
    cards: dict[str, Card] = {}
    for example in EXAMPLES:
        record_key, build = _ITEM_BUILDERS[example.widget_id]
        data = record.get(record_key)
        items = [] if data is None else build(data)
        cards[example.widget_id] = {"title": example.name, "items": items}
    return cards


def expected_sidebar_data(email: str | None) -> dict[str, Card]:
    """Like ``expected_cards``, in the normal form a sidebar carries (defaults filled in)."""
    return {
        widget_id: validate_widget_output(card).model_dump(mode="json")
        for widget_id, card in expected_cards(email).items()
    }
