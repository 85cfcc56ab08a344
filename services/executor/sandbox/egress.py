"""The widget side of brokered egress: sockets that ask the executor to connect for them.

The kernel refuses ``socket()`` and ``connect()`` to a widget process (seccomp.py),
so no code in it, ``_socket`` or ``ctypes`` alike, can open a network connection by
itself. This module keeps ``socket``, ``requests``, ``httpx`` and ``asyncio`` code
working: a TCP socket is a placeholder (one end of an AF_UNIX pair) until
``connect()``, which sends the address and the pair's other end to the executor over
the job's channel. The executor resolves the name, checks the address against the
policy, connects, and answers with the connected socket, which then takes the
placeholder's fd number (``dup2``). Names resolve through the executor too: the
widget process cannot send a DNS query.

Refusals are the executor's to record and report; here they are only raised.
"""

from __future__ import annotations

import _socket
import array
import errno
import json
import os
import select
import socket
import ssl
from collections.abc import Callable
from typing import Any

_REPLY_BYTES = 64 * 1024
_INET = (socket.AF_INET, socket.AF_INET6)
# Resolving has no timeout of the caller's; the executor bounds it, this is a backstop.
_RESOLVE_WAIT_S = 30.0


class EgressDenied(PermissionError):
    """Raised inside widget code for a connection the policy refuses."""


def _pair() -> tuple[socket.socket, socket.socket]:
    # A stream pair: the placeholder must look like a TCP socket to ``ssl``, which checks SO_TYPE.
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


# Built once in the zygote, before any patching: children only swap module attributes.
_BASE = socket.socket
_RAW = _socket.socket
_REAL_GETADDRINFO = _socket.getaddrinfo
_channel: socket.socket | None = None


def _send(message: dict[str, Any], reply_end: socket.socket) -> None:
    """One request to the executor: a datagram, with the end of a fresh pair to answer on."""
    try:
        if _channel is None:
            raise OSError(0, "no channel")
        socket.send_fds(_channel, [json.dumps(message).encode()], [reply_end.fileno()])
    except OSError as exc:
        raise ConnectionError("the executor's egress channel is closed") from exc
    finally:
        reply_end.close()


def _receive(ours: socket.socket, wait_s: float | None) -> tuple[dict[str, Any], int | None]:
    """The executor's answer on our end of a pair (one JSON object, then EOF), and the socket
    it passed, if any."""
    received, fds = b"", list[int]()
    while True:
        ready, _, _ = select.select([ours], [], [], wait_s)
        if not ready:
            for extra in fds:
                os.close(extra)
            raise TimeoutError("timed out")
        data, more = _recv_fds(ours)
        fds += more
        received += data
        try:
            answer: dict[str, Any] = json.loads(received)
        except ValueError:
            if data and len(received) < _REPLY_BYTES:
                continue
            for extra in fds:
                os.close(extra)
            raise ConnectionError("the executor closed the egress channel") from None
        for extra in fds[1:]:
            os.close(extra)
        return answer, fds[0] if fds else None


def _recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """``socket.recv_fds`` through the C method: ``SSLSocket`` refuses ``recvmsg``."""
    data, ancillary, _, _ = _RAW.recvmsg(sock, _REPLY_BYTES, socket.CMSG_SPACE(4), socket.MSG_DONTWAIT)
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def _raise_for(answer: dict[str, Any]) -> None:
    kind, message = answer.get("error"), str(answer.get("message", ""))
    if kind == "denied":
        raise EgressDenied(message)
    if kind == "timeout":
        raise TimeoutError(message or "timed out")
    if kind == "resolve":
        raise socket.gaierror(int(answer.get("errno", socket.EAI_NONAME)), message)
    raise OSError(int(answer.get("errno", 0)), message)


def _connect(
    sock: socket.socket,
    reply_end: socket.socket,
    address: Any,
    kind: str,
    options: list[tuple[Any, ...]],
    renewed: Callable[[socket.socket], None],
) -> None:
    """Have the executor connect ``sock``, a placeholder, to ``address``: the connected socket
    takes the placeholder's fd, then gets ``options``. After a failure ``sock`` is a fresh
    placeholder, whose new reply end goes to ``renewed``: it can be connected again."""
    host, port = address[0], address[1]
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str) or not isinstance(port, int):
        reply_end.close()
        _renew(sock, renewed)
        raise TypeError("connect() takes a (host, port) tuple")
    timeout = sock.gettimeout()
    message = {"op": "connect", "host": host, "port": port, "family": int(sock.family), "kind": kind,
               "timeout": timeout or None}  # fmt: skip
    try:
        _send(message, reply_end)
        answer, connected = _receive(sock, timeout + 1.0 if timeout else None)
    except BaseException:
        _renew(sock, renewed)
        raise
    if connected is None:
        _renew(sock, renewed)
        _raise_for(answer)
        raise ConnectionError("the executor answered without a socket")
    os.dup2(connected, sock.fileno(), inheritable=False)
    os.close(connected)
    sock.settimeout(timeout)  # the new file description is blocking until told otherwise
    for option in options:
        _BASE.setsockopt(sock, *option)


def _renew(sock: socket.socket, renewed: Callable[[socket.socket], None]) -> None:
    placeholder, reply_end = _pair()
    os.dup2(placeholder.fileno(), sock.fileno(), inheritable=False)
    placeholder.close()
    renewed(reply_end)


def _not_connected() -> OSError:
    return OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))


# A placeholder's reply end and options, by fd, once another socket object took the fd over:
# ``ssl.SSLContext.wrap_socket`` on a socket not yet connected detaches it.
_detached: dict[int, tuple[socket.socket, list[tuple[Any, ...]]]] = {}


class BrokeredSocket(_BASE):
    """A TCP or UDP socket whose connection the executor makes."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        self._reply_end: socket.socket | None = None
        self._options: list[tuple[Any, ...]] = []
        if fileno is not None:
            super().__init__(family, type, proto, fileno)  # an existing fd: family and type detected
            return
        family = socket.AF_INET if family == -1 else family
        type = socket.SOCK_STREAM if type == -1 else type
        if family not in _INET or type & 0xF not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            super().__init__(family, type, proto)  # the kernel refuses every other new socket
            return
        placeholder, self._reply_end = _pair()
        super().__init__(family, type, 0 if proto == -1 else proto, placeholder.detach())

    def _kind(self) -> str:
        return "udp" if self.type & 0xF == socket.SOCK_DGRAM else "tcp"

    def _renewed(self, reply_end: socket.socket) -> None:
        self._reply_end = reply_end

    def _brokered_connect(self, address: Any) -> None:
        assert self._reply_end is not None
        reply_end, self._reply_end = self._reply_end, None
        options, self._options = self._options, []
        _connect(self, reply_end, address, self._kind(), options, self._renewed)

    def connect(self, address: Any) -> None:
        if self._reply_end is None:
            super().connect(address)
            return
        self._brokered_connect(address)

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except EgressDenied:
            raise
        except TimeoutError:
            return errno.EAGAIN  # as CPython's own connect_ex reports a timeout
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def getpeername(self) -> Any:
        if self._reply_end is not None:
            raise _not_connected()  # the placeholder pair is connected; the socket is not
        return super().getpeername()

    def sendto(self, data: Any, *args: Any) -> int:
        if self._reply_end is not None:
            self._brokered_connect(args[-1])  # UDP: the executor refuses and names the address
        return int(super().sendto(data, *args))

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        if self._reply_end is not None and len(args) >= 3:
            self._brokered_connect(args[2])
        return int(super().sendmsg(buffers, *args))

    def bind(self, address: Any) -> None:
        if self._reply_end is not None:
            raise PermissionError(errno.EPERM, "widgets may not bind or listen on network sockets")
        super().bind(address)

    def setsockopt(self, *args: Any) -> None:
        if self._reply_end is not None:
            self._options.append(args)  # the placeholder is not a TCP socket: apply once connected
            return
        super().setsockopt(*args)

    def detach(self) -> int:
        fd = super().detach()
        if self._reply_end is not None:
            _detached[fd] = (self._reply_end, self._options)
            self._reply_end = None
        return fd

    def _real_close(self, *args: Any, **kwargs: Any) -> None:
        if self._reply_end is not None:
            self._reply_end.close()
        super()._real_close(*args, **kwargs)  # type: ignore[misc] # socket.socket has it; typeshed does not say


class BrokeredSSLSocket(ssl.SSLSocket):
    """``wrap_socket`` first, ``connect`` after: the executor connects, then TLS starts."""

    def getpeername(self) -> Any:
        if self.fileno() in _detached:
            raise _not_connected()  # so that wrapping does not start a handshake on the placeholder
        return super().getpeername()

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self.fileno() in _detached:
            raise _not_connected()  # ssl probes an unconnected socket for early data
        return super().recv(buflen, flags)

    def _real_connect(self, addr: Any, connect_ex: bool) -> int | None:
        pending = _detached.pop(self.fileno(), None)
        if pending is None:
            return super()._real_connect(addr, connect_ex)  # type: ignore[misc, no-any-return]
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        reply_end, options = pending
        fd = self.fileno()
        try:
            _connect(self, reply_end, addr, "tcp", options, lambda end: _detached.__setitem__(fd, (end, [])))
        except OSError as exc:
            if connect_ex and not isinstance(exc, EgressDenied):
                return exc.errno or errno.EIO
            raise
        # What SSLSocket._real_connect does once the TCP connection is up.
        self._sslobj = self.context._wrap_socket(  # type: ignore[attr-defined]
            self,
            False,
            self.server_hostname,
            owner=self,
            session=self._session,  # type: ignore[attr-defined]
        )
        self._connected = True
        if self.do_handshake_on_connect:  # type: ignore[attr-defined]
            self.do_handshake()
        return 0 if connect_ex else None


def resolve(host: str, family: int) -> list[str]:
    ours, theirs = _pair()
    try:
        _send({"op": "resolve", "host": host, "family": family}, theirs)
        answer, extra = _receive(ours, _RESOLVE_WAIT_S)
    finally:
        ours.close()
    if extra is not None:
        os.close(extra)
    if not answer.get("ok"):
        _raise_for(answer)
    return [str(address) for address in answer.get("addresses", [])]


def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
    try:
        return _REAL_GETADDRINFO(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        if host is None or flags & socket.AI_NUMERICHOST:
            raise
    name = host.decode("idna") if isinstance(host, bytes) else str(host)
    found = []
    for address in resolve(name, int(family)):
        found.extend(_REAL_GETADDRINFO(address, port, family, type, proto, flags | socket.AI_NUMERICHOST))
    return found


def gethostbyname(name: str) -> str:
    return str(getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])


def gethostbyname_ex(name: str) -> tuple[str, list[str], list[str]]:
    return name, [], [str(info[4][0]) for info in getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)]


class RawSocket(_socket.socket):
    """What ``_socket.socket`` names from now on: a brokered socket too. It inherits
    ``__init__``, because ``socket.socket.__init__`` calls ``_socket.socket.__init__``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return BrokeredSocket(*args, **kwargs)


def install(channel: socket.socket) -> None:
    """Replace ``socket.socket`` (and ``_socket.socket``) and the resolver functions."""
    global _channel
    _channel = channel
    socket.socket = BrokeredSocket  # type: ignore[misc]
    _socket.socket = RawSocket  # type: ignore[misc]
    ssl.SSLContext.sslsocket_class = BrokeredSSLSocket
    resolver = {"getaddrinfo": getaddrinfo, "gethostbyname": gethostbyname, "gethostbyname_ex": gethostbyname_ex}
    for module in (socket, _socket):
        for name, function in resolver.items():
            setattr(module, name, function)
