"""A local stand-in for the docs' example API (``https://api.example.com``).

Serves the four endpoints the example widgets call, with fixed data keyed by the
``email`` query parameter, so the demo and the tests run without the internet:

    GET /customers?email=            CRM account            (Bearer API_KEY)
    GET /wholesale/accounts?email=   wholesale account      (Bearer API_KEY)
    GET /warranties?email=           list of warranties     (Bearer API_KEY)
    GET /subscriptions?email=        list of subscriptions  (no auth, as in the docs)
    GET /healthz

An unknown email is a 404 everywhere; a known customer without a wholesale
account is a 404 there, and one without warranties or subscriptions gets ``[]``.

    python demo/mock_api.py --port 8900
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY_HEADER = "Bearer API_KEY"
"""The Authorization header the docs' examples send (the literal placeholder ``API_KEY``)."""

JANE = "jane@example.com"
BOB = "bob@example.com"

DEMO_CUSTOMERS: dict[str, dict[str, Any]] = {
    JANE: {
        "crm": {
            "id": "cus_1001",
            "name": "Jane Cooper",
            "email": JANE,
            "tier": "Premium",
            "ltv": 4820,
            "createdAt": "2021-03-14",
        },
        "wholesale": {
            "id": "wa_5521",
            "companyName": "Cooper Trail Supply Co.",
            "status": "Active",
            "pricingTier": "Gold",
            "creditLimit": 25000,
            "balance": 3150.75,
            "paymentTerms": "Net 30",
            "accountManager": "Sam Rivera",
            "phone": "+1 555 0134",
        },
        "warranties": [
            {
                "productName": "Summit 2 Tent",
                "purchaseDate": "2024-05-02",
                "isActive": True,
                "warrantyType": "Extended (3 years)",
                "expiresAt": "2027-05-02",
                "serialNumber": "ST2-88412",
            },
            {
                "productName": "Trailblazer Headlamp",
                "purchaseDate": "2022-08-19",
                "isActive": False,
                "warrantyType": "Standard (1 year)",
                "expiresAt": "2023-08-19",
                "serialNumber": "TH-10233",
            },
        ],
        "subscriptions": [
            {
                "planName": "Outfitters Pro",
                "status": "active",
                "price": 49,
                "nextBillingDate": "2025-07-01",
                "startDate": "2023-07-01",
                "usage": {"apiCalls": 8200, "limit": 10000, "storage": "3.2 GB"},
            },
            {
                "planName": "Gear Insurance",
                "status": "past_due",
                "price": 9.99,
                "nextBillingDate": "2025-06-15",
                "startDate": "2024-06-15",
                "usage": {"apiCalls": 0, "limit": 100, "storage": "0 GB"},
            },
        ],
    },
    # A thinner record: fields the docs read with .get() are missing, the
    # wholesale account is on hold and there is nothing to list.
    BOB: {
        "crm": {
            "id": "cus_1002",
            "name": "Bob Lee",
            "email": BOB,
            "tier": "Standard",
            "ltv": 120,
            "createdAt": "2024-11-30",
        },
        "wholesale": {
            "id": "wa_7730",
            "companyName": "Lee Bikes",
            "status": "On hold",
            "pricingTier": "Bronze",
            "creditLimit": 2000,
            "balance": 2450,
            "paymentTerms": "Prepaid",
        },
        "warranties": [],
        "subscriptions": [],
    },
}
"""The mock's whole data set: email -> record per endpoint (absent key: 404)."""


@dataclass(frozen=True)
class Route:
    record_key: str
    needs_auth: bool


ROUTES: Mapping[str, Route] = {
    "/customers": Route("crm", needs_auth=True),
    "/wholesale/accounts": Route("wholesale", needs_auth=True),
    "/warranties": Route("warranties", needs_auth=True),
    "/subscriptions": Route("subscriptions", needs_auth=False),
}


def lookup(path: str, email: str | None, authorization: str | None) -> tuple[HTTPStatus, object]:
    """The response for one request: pure, so tests can call it without a server."""
    if path == "/healthz":
        return HTTPStatus.OK, {"status": "ok"}
    route = ROUTES.get(path)
    if route is None:
        return HTTPStatus.NOT_FOUND, {"detail": f"no such endpoint: {path}"}
    if route.needs_auth and authorization != API_KEY_HEADER:
        return HTTPStatus.UNAUTHORIZED, {"detail": "expected Authorization: Bearer API_KEY"}
    if not email:
        return HTTPStatus.BAD_REQUEST, {"detail": "the email query parameter is required"}
    record = DEMO_CUSTOMERS.get(email.lower(), {}).get(route.record_key)
    if record is None:
        return HTTPStatus.NOT_FOUND, {"detail": f"no {route.record_key} record for {email}"}
    return HTTPStatus.OK, record


class MockApiHandler(BaseHTTPRequestHandler):
    server_version = "demo-mock-api/1"
    # Keep-alive, so a widget's requests.Session (or a load test) can reuse connections.
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        email = parse_qs(url.query).get("email", [None])[0]
        status, body = lookup(url.path, email, self.headers.get("Authorization"))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self._access_log(url.path, status, started)

    def _access_log(self, path: str, status: int, started: float) -> None:
        if not getattr(self.server, "access_log", True):
            return
        line = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "service": "mock-api",
            "event": "request",
            "method": self.command,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; ``_access_log`` writes JSON lines."""


class MockApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections under a burst of widget calls.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], access_log: bool = True) -> None:
        super().__init__(address, MockApiHandler)
        self.access_log = access_log


def build_server(host: str = "127.0.0.1", port: int = 8900, access_log: bool = True) -> MockApiServer:
    """A bound, not yet serving server; port 0 picks a free port (see ``server_port``)."""
    return MockApiServer((host, port), access_log=access_log)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local mock of the docs' example API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--quiet", action="store_true", help="no access log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = build_server(args.host, args.port, access_log=not args.quiet)
    url = f"http://{args.host}:{server.server_port}"
    print(json.dumps({"service": "mock-api", "event": "mock_api.started", "url": url}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
