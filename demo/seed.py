"""Seed the store with the demo business through its HTTP API, idempotently.

Creates the business ``demo`` ("Demo Outfitters"), its customers and
conversations, and the docs' four example widgets pointed at the mock API.
Running it again updates everything in place and issues a fresh API key.

    python demo/seed.py --store http://127.0.0.1:8000 --admin-key KEY --api-base http://127.0.0.1:8900

Human-readable progress first; the last stdout line is JSON with
``business_id`` and ``api_key`` for scripts. Any HTTP error exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a file (python demo/seed.py): make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from demo.examples import EXAMPLES, load_example
from demo.mock_api import BOB, JANE

BUSINESS_ID = "demo"
BUSINESS_NAME = "Demo Outfitters"
WIDGET_TIMEOUT_S = 10

CUSTOMERS: dict[str, dict[str, Any]] = {
    "cus-jane": {"email": JANE, "name": "Jane Cooper", "phone": "+1 555 0101", "attributes": {"segment": "vip"}},
    "cus-bob": {"email": BOB, "name": "Bob Lee", "phone": "+1 555 0102"},
    # An email the example API does not know: every widget shows an empty card.
    "cus-unknown": {"email": "alex.unknown@example.org", "name": "Alex Unknown"},
}

CONVERSATIONS: dict[str, dict[str, Any]] = {
    "conv-1001": {"public_id": "1001", "customer_id": "cus-jane", "channel": "email", "subject": "Tent pole snapped"},
    "conv-1002": {"public_id": "1002", "customer_id": "cus-bob", "channel": "chat", "subject": "Invoice question"},
    "conv-1003": {"public_id": "1003", "customer_id": "cus-unknown", "channel": "email", "subject": "Hello?"},
    # No customer at all: the examples return their empty card.
    "conv-1004": {"public_id": "1004", "channel": "chat", "subject": "Anonymous visitor"},
}


class SeedError(Exception):
    """A store request failed; the message says which and why."""


@dataclass(frozen=True)
class Store:
    client: httpx.Client
    admin_key: str

    def call(self, method: str, path: str, key: str, body: Any = None, accept: tuple[int, ...] = ()) -> httpx.Response:
        """One request; a status outside 2xx and ``accept`` raises ``SeedError`` with the store's detail."""
        try:
            response = self.client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise SeedError(f"{method} {path}: cannot reach the store at {self.client.base_url} ({exc})") from exc
        if response.is_success or response.status_code in accept:
            return response
        raise SeedError(f"{method} {path} -> {response.status_code}: {_detail(response)}")


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text or response.reason_phrase


def ensure_business(store: Store) -> str:
    """Create the business, or issue a fresh key if it exists; returns a business API key."""
    body = {"business_id": BUSINESS_ID, "name": BUSINESS_NAME}
    response = store.call("POST", "/v1/businesses", store.admin_key, body, accept=(409,))
    if response.status_code != 409:
        print(f"created business {BUSINESS_ID} ({BUSINESS_NAME})")
        return str(response.json()["api_key"])
    response = store.call("POST", f"/v1/businesses/{BUSINESS_ID}/api-keys", store.admin_key)
    print(f"business {BUSINESS_ID} exists; issued a fresh API key")
    return str(response.json()["api_key"])


def upsert_customers(store: Store, key: str) -> None:
    for customer_id, body in CUSTOMERS.items():
        store.call("PUT", f"/v1/businesses/{BUSINESS_ID}/customers/{customer_id}", key, body)
        print(f"customer {customer_id} <{body['email']}>")


def upsert_conversations(store: Store, key: str) -> None:
    for conversation_id, body in CONVERSATIONS.items():
        store.call("PUT", f"/v1/businesses/{BUSINESS_ID}/conversations/{conversation_id}", key, body)
        who = body.get("customer_id", "no customer")
        print(f"conversation {conversation_id} (public id {body['public_id']}, {who})")


def upsert_widgets(store: Store, key: str, api_base: str) -> None:
    base = f"/v1/businesses/{BUSINESS_ID}/widgets"
    for example in EXAMPLES:
        fields = {
            "name": example.name,
            "code": load_example(example.widget_id, api_base),
            "active": True,
            "position": example.position,
            "timeout_s": WIDGET_TIMEOUT_S,
        }
        response = store.call("POST", base, key, {"widget_id": example.widget_id, **fields}, accept=(409,))
        if response.status_code == 409:
            store.call("PATCH", f"{base}/{example.widget_id}", key, fields)
        verb = "updated" if response.status_code == 409 else "created"
        print(f"widget {example.widget_id} ({example.name}, position {example.position}) {verb}")


def seed(store: Store, api_base: str) -> str:
    key = ensure_business(store)
    upsert_customers(store, key)
    upsert_conversations(store, key)
    upsert_widgets(store, key, api_base)
    return key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Seed the store with the demo business.")
    parser.add_argument("--store", default="http://127.0.0.1:8000", help="store base URL")
    parser.add_argument(
        "--admin-key", default=os.environ.get("STORE_ADMIN_KEY"), help="store admin key (default: $STORE_ADMIN_KEY)"
    )
    parser.add_argument("--api-base", default="http://127.0.0.1:8900", help="where the example widgets send requests")
    args = parser.parse_args(argv)
    if not args.admin_key:
        parser.error("--admin-key (or STORE_ADMIN_KEY) is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with httpx.Client(base_url=args.store, timeout=30.0) as client:
        try:
            key = seed(Store(client, args.admin_key), args.api_base)
        except SeedError as exc:
            print(f"seed: error: {exc}", file=sys.stderr)
            return 1
    print(
        f"seeded business {BUSINESS_ID}: {len(CUSTOMERS)} customers, {len(CONVERSATIONS)} conversations, "
        f"{len(EXAMPLES)} widgets calling {args.api_base.rstrip('/')}"
    )
    print(json.dumps({"business_id": BUSINESS_ID, "api_key": key}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
