"""A request-body size and time limit as pure ASGI middleware.

A declared ``Content-Length`` over the limit is refused before anything is
read; otherwise the body is read, counting the bytes as they stream in (chunked
uploads declare no length), and refused as soon as it passes the limit. A body
within the limit is handed on to the app unchanged.

A body that stops arriving for ``timeout_s`` is a 400: a client that sent less
than its ``Content-Length`` would otherwise hold the request open for ever. One
whose connection ends first (a short body, or framing the server refused) is
answered, and counted, as a 400 too, never as the 500 of a response never sent.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            declared = _declared_length(scope)
        except ValueError:
            await _refuse(send, 400, "the Content-Length header is not a non-negative integer")
            return
        if declared is not None and declared > self._max_bytes:
            await self._refuse_too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self._timeout_s)
            except TimeoutError:
                await _refuse(send, 400, f"request body incomplete: nothing arrived for {self._timeout_s:g} s")
                return
            if message["type"] != "http.request":
                # Nobody reads this answer; sending it is what counts the request as a 400.
                await _refuse(send, 400, "request body incomplete: the connection ended before all of it arrived")
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                await self._refuse_too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self._app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse_too_large(self, send: Send) -> None:
        await _refuse(send, 413, f"request body is larger than the limit of {self._max_bytes} bytes")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(value)
            return int(value)
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The rest of the body is left unread, so the connection cannot be reused.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
