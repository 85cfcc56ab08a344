"""The egress supervisor: serves one job's channel, connecting for the widget what the policy allows.

A request is one datagram on the job's channel, JSON with one fd, the end of a stream
pair to answer on, with one JSON object, and then to close (so a widget's threads can
have several requests in flight):

- ``{"op": "connect", "host", "port", "family", "kind": "tcp"|"udp", "timeout"}``:
  resolve, check every address against the policy, connect, and answer ``{"ok": true}``
  with the connected socket, or ``{"ok": false, "error": "denied"|"timeout"|"resolve"|"os", ...}``;
- ``{"op": "resolve", "host", "family"}``: answer ``{"ok": true, "addresses": [...]}``.

Everything the widget sends is hostile input: it is bounded, validated, and a
request that makes no sense gets an error, never an exception in the executor.
Every refusal is remembered, so the run is reported ``egress_denied`` whatever the
widget did with the exception. Between the jobs of a warm worker nobody serves its
channel, and what it sent meanwhile is dropped unanswered (``refuse_pending``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import json
import select
import socket
from concurrent.futures import Executor
from typing import Any

from executor.egress.policy import Address, EgressPolicy

_MAX_REQUEST = 4096
_MAX_HOST = 253
_MAX_PENDING = 16
_MAX_REQUESTS = 1024
_FAMILIES = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6)

Answer = dict[str, Any]
Resolved = tuple[int, Address, tuple[Any, ...]]  # family, address, sockaddr


class _Refused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.get("message", ""))
        self.answer = answer


def _error(kind: str, number: int, message: str) -> _Refused:
    return _Refused({"ok": False, "error": kind, "errno": number, "message": message})


def _where(address: str | Address, port: int) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = f"::ffff:{address.ipv4_mapped}"  # Python would print ::ffff:7f00:1
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


class JobEgress:
    """One job's egress: serves its channel until stopped and remembers every refusal."""

    def __init__(self, policy: EgressPolicy, channel: socket.socket, timeout_s: float, resolver: Executor) -> None:
        self.denials: list[str] = []
        self._resolver = resolver
        self._policy = policy
        self._channel = channel
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests = 0
        self._reading = False
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self._channel.setblocking(False)
        self._loop.add_reader(self._channel.fileno(), self._on_readable)
        self._reading = True

    def stop(self) -> None:
        """Stop serving (the job is over): pending connections are abandoned and closed.
        The channel stays open, for a warm worker's next job."""
        self._stop_reading()
        for task in self._tasks:
            task.cancel()

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._channel.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        while self._reading:
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, _MAX_REQUEST, 1, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._stop_reading()  # the widget process ended or closed its channel
            elif len(fds) == 1:
                self._accept(data, fds[0])
                continue
            for fd in fds:
                socket.close(fd)

    def _accept(self, data: bytes, fd: int) -> None:
        try:
            reply = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
        except OSError:
            socket.close(fd)  # not a socket
            return
        self._requests += 1
        if self._requests > _MAX_REQUESTS:
            self._stop_reading()
            reply.close()
            return
        try:
            request = _decode(data)
            # Most connections are to a literal address that answers at once: no task, no loop turn.
            connected = self._connect_now(request) if request["op"] == "connect" else None
        except (ValueError, TypeError, RecursionError):
            self._finish(reply, {"ok": False, "error": "os", "errno": errno.EINVAL, "message": "bad egress request"})
            return
        except _Refused as refused:
            self._finish(reply, refused.answer)
            return
        if connected is not None:
            self._finish(reply, {"ok": True}, connected)
        elif len(self._tasks) >= _MAX_PENDING:
            self._finish(reply, {"ok": False, "error": "os", "errno": errno.EAGAIN, "message": "too many requests"})
        else:
            task = self._loop.create_task(self._serve(request, reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: dict[str, Any], reply: socket.socket) -> None:
        connected: socket.socket | None = None
        try:
            if request["op"] == "connect":
                connected = await self._connect(request)
                answer: Answer = {"ok": True}
            else:
                host, family = _host(request), _family(request)
                async with asyncio.timeout(self._timeout_s):
                    addresses = await self._resolve(host, 0, family)
                answer = {"ok": True, "addresses": [str(ip) for _, ip, _ in addresses]}
        except _Refused as refused:
            answer = refused.answer
        except TimeoutError:
            answer = {"ok": False, "error": "resolve", "errno": socket.EAI_AGAIN, "message": "name lookup timed out"}
        except (ValueError, TypeError):
            answer = {"ok": False, "error": "os", "errno": errno.EINVAL, "message": "bad egress request"}
        except BaseException:
            reply.close()
            raise
        self._finish(reply, answer, connected)

    @classmethod
    def _finish(cls, reply: socket.socket, answer: Answer, connected: socket.socket | None = None) -> None:
        try:
            cls._answer(reply, answer, connected)
        finally:
            reply.close()
            if connected is not None:
                connected.close()

    @staticmethod
    def _answer(reply: socket.socket, answer: Answer, connected: socket.socket | None = None) -> None:
        with contextlib.suppress(OSError):  # the widget gave up waiting, or closed its end
            reply.setblocking(False)
            fds = [connected.fileno()] if connected is not None else []
            socket.send_fds(reply, [json.dumps(answer).encode()], fds)

    def _deny(self, message: str) -> _Refused:
        self.denials.append(message)
        return _error("denied", errno.EACCES, message)

    def _target(self, request: dict[str, Any]) -> tuple[str, int, int, float]:
        """(host, port, family, time limit) of a connect request; UDP is refused here."""
        host, family, port = _host(request), _family(request), request.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("bad port")
        timeout = request.get("timeout")
        limit = min(float(timeout), self._timeout_s) if isinstance(timeout, int | float) else self._timeout_s
        if request.get("kind") != "tcp":
            raise self._deny(f"UDP to {_where(host, port)} is not allowed (widgets may open TCP connections only)")
        return host, port, family, max(limit, 0.001)

    def _judge(self, host: str, port: int, addresses: list[Resolved]) -> None:
        """Every address a name stands for must be allowed, or none is tried."""
        for _, ip, _ in addresses:
            decision = self._policy.check(ip, port)
            if not decision.allowed:
                named = "" if _is_literal(host) else f" ({host})"
                raise self._deny(f"connection to {_where(ip, port)}{named} is not allowed ({decision.reason})")

    def _connect_now(self, request: dict[str, Any]) -> socket.socket | None:
        """The connection, if it needs neither DNS nor waiting; None sends the request the slow way."""
        host, port, family, _ = self._target(request)
        addresses = literal_addresses(host, port, family)
        if addresses is None:
            return None
        self._judge(host, port, addresses)
        address_family, _, sockaddr = addresses[0]
        sock = socket.socket(address_family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        result = sock.connect_ex(sockaddr)
        if result == errno.EINPROGRESS and select.select([], [sock], [], 0)[1]:
            result = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or 0
        if result == 0:
            return sock
        sock.close()
        return None

    async def _connect(self, request: dict[str, Any]) -> socket.socket:
        host, port, family, limit = self._target(request)
        try:
            async with asyncio.timeout(limit):
                addresses = await self._resolve(host, port, family)
                self._judge(host, port, addresses)
                return await self._first_connection(addresses)
        except TimeoutError:
            raise _error("timeout", errno.ETIMEDOUT, "timed out") from None

    async def _first_connection(self, addresses: list[Resolved]) -> socket.socket:
        """Like ``socket.create_connection``: each address in turn, the first that answers."""
        failure: OSError | None = None
        for family, _, sockaddr in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            try:
                await self._loop.sock_connect(sock, sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        number = failure.errno if failure is not None and failure.errno else errno.ECONNREFUSED
        raise _error("os", number, str(failure or "no address"))

    async def _resolve(self, host: str, port: int, family: int) -> list[Resolved]:
        """(family, address, sockaddr) for each answer; literals (``2130706433``, ``0x7f.1``) without DNS."""
        found = literal_addresses(host, port, family)
        if found is not None:
            return found
        try:
            lookup = functools.partial(socket.getaddrinfo, host, port, family, socket.SOCK_STREAM)
            infos = await self._loop.run_in_executor(self._resolver, lookup)
        except socket.gaierror as exc:
            raise _error("resolve", exc.errno or socket.EAI_NONAME, f"{host}: {exc.strerror}") from None
        return _addresses(infos)


def refuse_pending(channel: socket.socket) -> int:
    """Drop every request a worker sent while it had no job (their answer ends close, so its
    ``connect`` fails): egress is served only while a job runs. Returns how many were dropped."""
    dropped = 0
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(channel, _MAX_REQUEST, 1, socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return dropped
        except OSError:
            return dropped  # the worker is gone; dispatching to it finds out
        for fd in fds:
            socket.close(fd)
        if not data and not fds:
            return dropped
        dropped += 1


def literal_addresses(host: str, port: int, family: int = socket.AF_UNSPEC) -> list[Resolved] | None:
    """The address a literal stands for, in every spelling the C library accepts
    (``2130706433``, ``0x7f.1``, ``127.1``, ``::ffff:127.0.0.1``); None for a name."""
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None
    return _addresses(infos)


def _addresses(infos: list[Any]) -> list[Resolved]:
    found = []
    for info_family, _, _, _, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        found.append((int(info_family), address, tuple(sockaddr)))
    return found


def _decode(data: bytes) -> dict[str, Any]:
    request = json.loads(data)
    if not isinstance(request, dict) or request.get("op") not in ("connect", "resolve"):
        raise ValueError("bad request")
    return request


def _host(request: dict[str, Any]) -> str:
    host = request.get("host")
    if not isinstance(host, str) or not 0 < len(host) <= _MAX_HOST or "\0" in host:
        raise ValueError("bad host")
    return host


def _family(request: dict[str, Any]) -> int:
    family = request.get("family", socket.AF_UNSPEC)
    if family not in _FAMILIES:
        raise ValueError("bad family")
    return int(family)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
