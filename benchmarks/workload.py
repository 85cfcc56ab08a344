"""The benchmark workload, identical for the product and its peers: the upstream API the
widgets call, the widget code, the context, the statistics and the floor.

The upstream is a raw ``asyncio.Protocol`` HTTP/1.1 responder with keep-alive that answers
canned bytes (a few microseconds of CPU a request), so it is never the bottleneck. It serves
the demo API's routes (``demo/mock_api.py``'s ``lookup``, answers cached) under any
``/w/<n>`` prefix, so each benchmark widget has an endpoint of its own, and a prefix can be
given a delay (the realistic regime). Run it as its own process:

    .venv/bin/python benchmarks/workload.py upstream --port 8901 --delay /w/11=0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.mock_api import API_KEY_HEADER, JANE, lookup

CUSTOMER_EMAIL = JANE
HEALTH_PATH = "/healthz"

WIDGET_CODE = """\
import requests

def get_sidebar_data(context):
    response = requests.get(
        "{api_base}{path}",
        params={{"email": context["customer"]["email"]}},
        headers={{"Authorization": "Bearer API_KEY"}},
        timeout=10,
    )
    response.raise_for_status()
    account = response.json()
    return {{
        "title": "Bench {n}",
        "items": [{{
            "title": account["name"],
            "badge": {{"text": account["tier"], "color": "green"}},
            "sections": [{{"title": "Account", "fields": {{"Tier": account["tier"], "LTV": account["ltv"]}}}}],
        }}],
    }}
"""

# Throughput widgets are /w/1.. (no delay); the realistic regime's are /w/11.. with these delays.
THROUGHPUT_FIRST = 1
REALISTIC_FIRST = 11
REALISTIC_DELAY_RANGE_S = (0.05, 0.2)


@dataclass(frozen=True)
class BenchWidget:
    widget_id: str
    name: str
    position: int
    path: str

    def code(self, api_base: str) -> str:
        return WIDGET_CODE.format(api_base=api_base.rstrip("/"), path=self.path, n=self.position)

    def message(self, api_base: str) -> dict[str, Any]:
        """What a peer sends to run it: ids, name, position and code."""
        return {"widget_id": self.widget_id, "name": self.name, "position": self.position, "code": self.code(api_base)}


def bench_widgets(count: int, first: int = THROUGHPUT_FIRST) -> list[BenchWidget]:
    """``count`` widgets, each calling its own ``/w/<n>/customers``."""
    return [BenchWidget(f"bench-{n}", f"Bench {n}", n, f"/w/{n}/customers") for n in range(first, first + count)]


def realistic_delays(widgets: Sequence[BenchWidget]) -> dict[str, float]:
    """Path prefix -> delay for the realistic regime: spread evenly over 50-200 ms, one per widget."""
    low, high = REALISTIC_DELAY_RANGE_S
    steps = max(1, len(widgets) - 1)
    return {w.path.rsplit("/", 1)[0]: round(low + (high - low) * i / steps, 4) for i, w in enumerate(widgets)}


def bench_context(business_id: str, conversation_id: str) -> dict[str, Any]:
    """The context the store builds for the benchmark's conversation (``shared/context.py``'s shape)."""
    return {
        "conversation": {
            "id": conversation_id,
            "public_id": None,
            "channel": None,
            "subject": None,
            "status": None,
            "customer_id": "bench-customer",
            "created_at": "2026-11-21T16:30:00+00:00",
            "attributes": {},
        },
        "customer": {"id": "bench-customer", "email": CUSTOMER_EMAIL, "name": None, "phone": None, "attributes": {}},
        "business": {"id": business_id, "name": "E2E benchmark"},
    }


def run_widget_code(widget: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Exec the widget's code and call ``get_sidebar_data(context)``, in this process, unsandboxed."""
    started = time.perf_counter()
    namespace: dict[str, Any] = {"__name__": "widget"}
    try:
        exec(compile(widget["code"], f"<widget {widget['widget_id']}>", "exec"), namespace)  # noqa: S102 - the peers run widget code unsandboxed, by design
        data, status, error = namespace["get_sidebar_data"](context), "ok", None
    except Exception as exc:  # noqa: BLE001 - a widget may raise anything; it becomes an error entry
        data, status = {"title": widget["name"], "items": []}, "error"
        error = {"type": type(exc).__name__, "message": str(exc)[:500]}
    return {
        "widget_id": widget["widget_id"],
        "name": widget["name"],
        "position": widget["position"],
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000),
        "data": data,
        "error": error,
        "finished_at": time.time(),
    }


# --- statistics -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def stats_ms(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p90, p99 and max of ``values`` (milliseconds), rounded to 0.1."""
    ordered = sorted(values)
    result: dict[str, float | int | None] = {"count": len(ordered)}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        result[name] = round(percentile(ordered, p), 1) if ordered else None
    return result


# --- the upstream -----------------------------------------------------------------------------

_WIDGET_PREFIX = re.compile(r"^/w/\d+(?=/)")
_MAX_CACHED = 4096


class Answers:
    """Canned responses: the bytes for a request target, computed once by the demo API's ``lookup``."""

    def __init__(self, delays: Mapping[str, float] | None = None) -> None:
        self._delays = dict(delays or {})
        self._cache: dict[tuple[bytes, bytes | None], bytes] = {}

    def delay_for(self, path: str) -> float:
        prefix = _WIDGET_PREFIX.match(path)
        return self._delays.get(prefix.group(0), 0.0) if prefix else 0.0

    def response(self, target: bytes, authorization: bytes | None, keep_alive: bool) -> bytes:
        key = (target, authorization)
        body = self._cache.get(key)
        if body is None:
            body = self._render(target.decode("latin-1"), authorization)
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = body
        return body if keep_alive else body.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)

    def _render(self, target: str, authorization: bytes | None) -> bytes:
        url = urlsplit(target)
        path = _WIDGET_PREFIX.sub("", url.path)
        email = parse_qs(url.query).get("email", [None])[0]
        status, payload = lookup(path, email, authorization.decode("latin-1") if authorization else None)
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


class UpstreamProtocol(asyncio.Protocol):
    """One connection: parses pipelined GETs, answers each in order after its path's delay."""

    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._ready_at = 0.0  # keeps delayed answers in request order

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head, rest = self._buffer[:end], self._buffer[end + 4 :]
            request_line, _, header_block = head.partition(b"\r\n")
            headers = _headers(header_block)
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(rest) < length:
                return
            self._buffer = rest[length:]
            parts = request_line.split(b" ")
            if len(parts) != 3:
                self._write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", close=True)
                return
            _method, target, version = parts
            keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
            response = self._answers.response(target, headers.get(b"authorization"), keep_alive)
            self._answer(response, self._answers.delay_for(target.split(b"?", 1)[0].decode("latin-1")), keep_alive)

    def _answer(self, response: bytes, delay: float, keep_alive: bool) -> None:
        now = time.monotonic()
        if delay <= 0 and self._ready_at <= now:
            self._write(response, close=not keep_alive)
            return
        self._ready_at = max(self._ready_at, now + delay)
        asyncio.get_running_loop().call_at(self._ready_at, self._write, response, not keep_alive)

    def _write(self, response: bytes, close: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(response)
        if close:
            self._transport.close()


def _headers(block: bytes) -> dict[bytes, bytes]:
    headers = {}
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def start_upstream(host: str, port: int, delays: Mapping[str, float] | None = None) -> asyncio.Server:
    answers = Answers(delays)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: UpstreamProtocol(answers), host, port, backlog=1024, reuse_address=True)


async def _serve(host: str, port: int, delays: dict[str, float]) -> None:
    server = await start_upstream(host, port, delays)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"upstream serving on http://{host}:{port} delays {delays}", flush=True)
    async with server:
        await stop.wait()


# --- the floor --------------------------------------------------------------------------------


class KeepAliveClient:
    """A minimal HTTP/1.1 GET client with a connection pool, for the floor: httpx costs
    milliseconds of CPU a request, which would make the floor measure the client."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, target: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        reader, writer = self._idle.pop() if self._idle else await asyncio.open_connection(self._host, self._port)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self._host}\r\n{lines}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(_headers(head.split(b"\r\n", 1)[1]).get(b"content-length", b"0"))
        body = await reader.readexactly(length)
        self._idle.append((reader, writer))
        return int(head.split(b" ", 2)[1]), body

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def floor_closed_loop(
    api_base: str, widgets: Sequence[BenchWidget], events: int, concurrency: int
) -> dict[str, Any]:
    """``asyncio.gather`` of each event's GETs in this process: no broker, no database, no sandbox."""
    url = urlsplit(api_base)
    client = KeepAliveClient(url.hostname or "127.0.0.1", url.port or 80)
    query = urlencode({"email": CUSTOMER_EMAIL})
    headers = {"Authorization": API_KEY_HEADER}
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)

    async def get(path: str) -> None:
        status, body = await client.get(f"{path}?{query}", headers)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}")
        json.loads(body)

    async def one() -> None:
        async with slots:
            started = time.perf_counter()
            await asyncio.gather(*(get(w.path) for w in widgets))
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as tasks:
            for _ in range(events):
                tasks.create_task(one())
    finally:
        await client.aclose()
    elapsed = time.perf_counter() - began
    return {
        "completed": len(latencies),
        "latency_ms": stats_ms(latencies),
        "sidebars_per_s": round(len(latencies) / elapsed, 1),
    }


def parse_delays(values: Sequence[str]) -> dict[str, float]:
    delays = {}
    for value in values:
        prefix, _, seconds = value.partition("=")
        delays[prefix] = float(seconds)
    return delays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The benchmark workload.")
    sub = parser.add_subparsers(dest="command", required=True)
    upstream = sub.add_parser("upstream", help="serve the mock upstream API")
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, required=True)
    upstream.add_argument("--delay", action="append", default=[], metavar="/w/N=SECONDS")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, parse_delays(args.delay)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
