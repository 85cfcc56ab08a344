"""Broken request framing, sent over a raw socket to the store process: a 400, never a hang, never a 500.

A body shorter than its ``Content-Length`` and a bad chunk size are only visible
below ASGI, so these go to the real server (uvicorn and h11, as ``python -m store``
runs them). Each answer is read until the server closes; the socket timeout only
bounds a failure.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.infra import Infra
from tests.store.conftest import StoreProcess, running_store

BODY_TIMEOUT_S = 0.5
# Far above BODY_TIMEOUT_S: reaching it means the server hung.
SOCKET_TIMEOUT_S = 15.0
# Refused by uvicorn itself, as plain text, before the app sees it.
UVICORN_400 = b"Invalid HTTP request received."


@pytest.fixture(scope="module")
def store(infra: Infra) -> Iterator[StoreProcess]:
    with running_store(infra, "store-framing", STORE_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S)) as running:
        yield running


def request_head(framing: str) -> bytes:
    return (
        f"POST /v1/chat/acme/messages HTTP/1.1\r\nHost: store\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def exchange(store: StoreProcess, data: bytes, *, half_close: bool) -> bytes:
    """Send ``data`` (then end our side if ``half_close``) and read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", store.port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer
    return int(answer.split(b" ", 2)[1])


def counted_400s(store: StoreProcess) -> int:
    return sum(1 for line in store.process.lines if line.get("event") == "http.request" and line.get("status") == 400)


def assert_counted_as_a_400(store: StoreProcess, before: int) -> None:
    """The app logs (and counts) the request once it sees the connection end; no 5xx is ever counted."""
    store.process.wait_for(
        lambda line: line.get("event") == "http.request" and line.get("status") == 400, count=before + 1
    )
    metrics = httpx.get(f"{store.url}/metrics", timeout=10).text
    server_errors = [
        line for line in metrics.splitlines() if line.startswith("store_http_requests_total") and 'status="5' in line
    ]
    assert server_errors == []


def test_a_body_shorter_than_its_content_length_then_the_client_s_end_is_a_400(store: StoreProcess) -> None:
    before = counted_400s(store)

    answer = exchange(store, request_head("Content-Length: 100") + b'{"visitor_id": ', half_close=True)

    assert status_of(answer) == 400
    assert answer.endswith(b"0\r\n\r\n") and UVICORN_400 in answer
    assert_counted_as_a_400(store, before)


def test_a_body_shorter_than_its_content_length_that_stops_arriving_is_a_400(store: StoreProcess) -> None:
    """The client keeps the connection open and waits: the store gives up after STORE_BODY_TIMEOUT_S."""
    before = counted_400s(store)

    answer = exchange(store, request_head("Content-Length: 100") + b'{"visitor_id": ', half_close=False)

    assert status_of(answer) == 400
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"detail": f"request body incomplete: nothing arrived for {BODY_TIMEOUT_S:g} s"}
    assert_counted_as_a_400(store, before)


@pytest.mark.parametrize(
    "chunk_size", [b"zz", b"-1", b"F" * 21, b"1" + b"0" * 20], ids=["not-hex", "negative", "21-digits", "2^80"]
)
def test_a_malformed_or_oversized_chunk_size_is_a_400(store: StoreProcess, chunk_size: bytes) -> None:
    before = counted_400s(store)

    answer = exchange(store, request_head("Transfer-Encoding: chunked") + chunk_size + b"\r\n{}", half_close=False)

    assert status_of(answer) == 400
    assert UVICORN_400 in answer
    assert_counted_as_a_400(store, before)


@pytest.mark.parametrize("half_close", [True, False], ids=["then-client-end", "then-silence"])
def test_a_huge_chunk_size_whose_bytes_never_come_is_a_400(store: StoreProcess, half_close: bool) -> None:
    """h11 takes a chunk size of up to 20 hex digits and waits for its bytes; they never come."""
    before = counted_400s(store)

    answer = exchange(
        store, request_head("Transfer-Encoding: chunked") + b"F" * 20 + b'\r\n{"a"', half_close=half_close
    )

    assert status_of(answer) == 400
    assert_counted_as_a_400(store, before)


def test_a_chunked_body_cut_short_inside_a_chunk_is_a_400(store: StoreProcess) -> None:
    before = counted_400s(store)

    answer = exchange(store, request_head("Transfer-Encoding: chunked") + b"40\r\n{}", half_close=True)

    assert status_of(answer) == 400
    assert_counted_as_a_400(store, before)


def test_a_complete_chunked_body_is_served(store: StoreProcess) -> None:
    """The same framing, whole: the request reaches the app (here, an unknown business)."""
    body = json.dumps({"visitor_id": "visitor-0123456789abcdef", "content": "hello"}).encode()
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    answer = exchange(store, request_head("Transfer-Encoding: chunked\r\nConnection: close") + chunks, half_close=False)

    assert status_of(answer) == 404
    assert answer.endswith(b'{"detail":"unknown business"}')
