"""The egress bypass corpus: every way a widget might reach an address the policy denies,
and listeners the test owns to prove that nothing reached them.

Every target is on loopback or in this test's own sockets: the listeners below are
the only places a bypass could land. Ports of the denied listeners are open to
widgets on public addresses (``EXECUTOR_EGRESS_PORTS``), so Landlock's port rules
do not stand in the way and only the address policy and the kernel's refusal of
sockets can stop a connection.

Entries: name -> (widget body, expected error type or None for ok, text the refusal must contain).
A body is a ``string.Template``: ``$tcp``, ``$tcp6``, ``$udp`` (denied listeners),
``$abstract``, ``$path`` (AF_UNIX listeners) and ``$allowed`` (an allow-listed HTTP server).
Bodies that call the kernel directly assert its refusal themselves and return normally.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import select
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from string import Template

from tests.poison import widget

_KERNEL = """
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
def refused(result):
    assert result == -1, f"the kernel allowed it: {result}"
    assert ctypes.get_errno() == errno.EPERM, errno.errorcode.get(ctypes.get_errno())
def sockaddr_in(port):
    return bytes([2, 0, port >> 8, port & 255, 127, 0, 0, 1]) + bytes(8)
def sockaddr_un(path):
    return (1).to_bytes(2, "little") + path
"""

BYPASSES: dict[str, tuple[str, str | None, str]] = {
    "socket.create_connection": (
        "import socket\nsocket.create_connection(('127.0.0.1', $tcp), 2)",
        "egress_denied",
        "127.0.0.1:$tcp",
    ),
    "_socket.socket": (
        "import _socket\ns = _socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', $tcp))",
        "egress_denied",
        "127.0.0.1:$tcp",
    ),
    "connect_ex": (
        "import socket\ns = socket.socket()\nreturn {'title': str(s.connect_ex(('127.0.0.1', $tcp))), 'items': []}",
        "egress_denied",
        "127.0.0.1:$tcp",
    ),
    "the refusal caught by the widget": (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', $tcp), 2)\nexcept OSError:\n    pass\n"
        "return {'title': 'fine', 'items': []}",
        "egress_denied",
        "caught the refusal",
    ),
    "IPv6 loopback": ("import socket\nsocket.create_connection(('::1', $tcp6), 2)", "egress_denied", "[::1]:$tcp6"),
    "IPv4-mapped IPv6": (
        "import socket\ns = socket.socket(socket.AF_INET6)\ns.connect(('::ffff:127.0.0.1', $tcp))",
        "egress_denied",
        "[::ffff:127.0.0.1]:$tcp",
    ),
    "decimal IPv4": ("import socket\nsocket.create_connection(('2130706433', $tcp), 2)", "egress_denied", "127.0.0.1"),
    "hex IPv4": ("import socket\nsocket.create_connection(('0x7f.1', $tcp), 2)", "egress_denied", "127.0.0.1"),
    "a name resolving to loopback": (
        "import requests\nrequests.get('http://localhost:$tcp/', timeout=2)",
        "egress_denied",
        "is not allowed (loopback)",
    ),
    "httpx": ("import httpx\nhttpx.get('http://127.0.0.1:$tcp/', timeout=2)", "egress_denied", "127.0.0.1:$tcp"),
    "TLS wrapped before connect": (
        "import socket, ssl\ns = ssl.create_default_context().wrap_socket(socket.socket(), server_hostname='x')\n"
        "s.settimeout(2)\ns.connect(('127.0.0.1', $tcp))",
        "egress_denied",
        "127.0.0.1:$tcp",
    ),
    "asyncio": (
        "import asyncio\nasyncio.run(asyncio.open_connection('127.0.0.1', $tcp))",
        "egress_denied",
        "127.0.0.1:$tcp",
    ),
    "UDP to a DNS server of the test's own": (
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "query = b'\\x12\\x34\\x01\\x00\\x00\\x01' + bytes(6) + b'\\x04leak\\x00\\x00\\x01\\x00\\x01'\n"
        "s.sendto(query, ('127.0.0.1', $udp))",
        "egress_denied",
        "UDP to 127.0.0.1:$udp",
    ),
    "a forged request on the widget's channel": (
        "import json, os, socket\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        probe = socket.socket(fileno=os.dup(fd))\n"
        "    except OSError:\n"
        "        continue\n"
        "    if probe.type == socket.SOCK_SEQPACKET:\n"
        "        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "        request = {'op': 'connect', 'host': '127.0.0.1', 'port': $tcp, 'family': 2, 'kind': 'tcp'}\n"
        "        socket.send_fds(probe, [json.dumps(request).encode()], [theirs.fileno()])\n"
        "        answer, fds, _, _ = socket.recv_fds(ours, 4096, 1)\n"
        "        assert not fds, 'the executor connected a forged request'\n"
        "        return {'title': answer.decode(), 'items': []}\n"
        "raise AssertionError('no channel found')",
        "egress_denied",
        "127.0.0.1:$tcp",
    ),
    "the original socket class": (
        "import socket\nbase = [c for c in type(socket.socket()).__mro__ if c.__module__ == '_socket'][0]\n"
        "try:\n    base(socket.AF_INET, socket.SOCK_STREAM)\nexcept PermissionError:\n"
        "    return {'title': 'refused', 'items': []}\nraise AssertionError('a socket was created')",
        None,
        "",
    ),
    "ctypes socket()": (_KERNEL + "refused(libc.socket(2, 1, 0))\nrefused(libc.socket(10, 1, 0))", None, ""),
    "raw socket syscall": (
        _KERNEL + "refused(libc.syscall(41, 2, 1, 0))\nrefused(libc.syscall(41, 10, 2, 0))",
        None,
        "",
    ),
    "ctypes connect() on a socketpair end": (
        _KERNEL
        + "a, b = socket.socketpair()\naddress = sockaddr_in($tcp)\nrefused(libc.connect(a.fileno(), address, 16))",
        None,
        "",
    ),
    "io_uring": (
        _KERNEL + "params = ctypes.create_string_buffer(120)\nrefused(libc.syscall(425, 8, params))\n"
        "refused(libc.syscall(426, 0, 0, 0, 0, 0, 0))\nrefused(libc.syscall(427, 0, 0, 0, 0))",
        None,
        "",
    ),
    "AF_NETLINK and AF_PACKET": (
        _KERNEL + "refused(libc.socket(16, 3, 0))\nrefused(libc.socket(17, 3, 768))\nrefused(libc.socket(17, 2, 768))\n"
        "for family, kind in ((16, 3), (17, 3)):\n"
        "    try:\n        socket.socket(family, kind, 0)\n    except PermissionError:\n        continue\n"
        "    raise AssertionError(f'family {family} allowed')",
        None,
        "",
    ),
    "AF_UNIX to an abstract socket": (
        _KERNEL + "refused(libc.socket(1, 1, 0))\na, b = socket.socketpair()\n"
        "address = sockaddr_un(b'\\0$abstract')\nrefused(libc.connect(a.fileno(), address, len(address)))\n"
        "try:\n    socket.socket(socket.AF_UNIX).connect('\\0$abstract')\nexcept PermissionError:\n    pass\n"
        "else:\n    raise AssertionError('connected')",
        None,
        "",
    ),
    "AF_UNIX to a socket path": (
        _KERNEL + "a, b = socket.socketpair()\naddress = sockaddr_un(b'$path\\0')\n"
        "refused(libc.connect(a.fileno(), address, len(address)))",
        None,
        "",
    ),
    "a datagram socketpair": (
        _KERNEL + "refused(libc.socketpair(1, 2, 0, ctypes.create_string_buffer(8)))\n"
        "refused(libc.socketpair(2, 1, 0, ctypes.create_string_buffer(8)))",
        None,
        "",
    ),
    "reconnecting an allowed connection": (
        _KERNEL + "s = socket.create_connection(('127.0.0.1', $allowed), 2)\n"
        "refused(libc.connect(s.fileno(), bytes(16), 16))\n"  # AF_UNSPEC: disconnect
        "address = sockaddr_in($tcp)\n"
        "refused(libc.sendto(s.fileno(), b'x', 1, 0x20000000, address, 16))\n"  # MSG_FASTOPEN
        "refused(libc.connect(s.fileno(), address, 16))",
        None,
        "",
    ),
}

# A kernel refusal asserted by the body itself ends in a valid card, so the run is ok.
BYPASSES = {
    name: (
        body if "\nreturn " in "\n" + body or error else body + "\nreturn {'title': 'refused', 'items': []}",
        error,
        named,
    )
    for name, (body, error, named) in BYPASSES.items()
}

# Allowed traffic still works, through every client widgets use.
ALLOWED: dict[str, str] = {
    "requests": "import requests\nr = requests.get('http://127.0.0.1:$allowed/', timeout=2)\n"
    "return {'title': str(r.status_code), 'items': []}",
    "httpx": "import httpx\nr = httpx.get('http://127.0.0.1:$allowed/', timeout=2)\n"
    "return {'title': str(r.status_code), 'items': []}",
    "asyncio": (
        "import asyncio\nasync def fetch():\n"
        "    reader, writer = await asyncio.open_connection('127.0.0.1', $allowed)\n"
        "    writer.write(b'GET / HTTP/1.0\\r\\n\\r\\n')\n    line = await reader.readline()\n    writer.close()\n"
        "    return line.split()[1].decode()\nreturn {'title': asyncio.run(fetch()), 'items': []}"
    ),
    "a socket with options set before connect": (
        "import socket\ns = socket.socket()\ns.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\ns.settimeout(2)\n"
        "s.connect(('127.0.0.1', $allowed))\nassert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)\n"
        "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\nreturn {'title': s.recv(12)[9:].decode(), 'items': []}"
    ),
}


@dataclass(frozen=True)
class Targets:
    tcp: int
    tcp6: int
    udp: int
    abstract: str
    path: str
    allowed: int

    def code(self, body: str) -> str:
        return widget(Template(body).substitute(vars(self)))

    def text(self, template: str) -> str:
        return Template(template).substitute(vars(self))

    def egress_ports(self) -> tuple[int, ...]:
        """Open on public addresses, so that only the address policy and the kernel stand in the way."""
        return (80, 443, self.tcp, self.tcp6, self.udp)

    def egress_allow(self) -> tuple[str, ...]:
        return (f"127.0.0.1:{self.allowed}",)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Listeners:
    """Sockets the test owns and never accepts on: a connection or datagram that reached
    one stays pending, so ``reached()`` sees it without waiting for anything."""

    def __init__(self, directory: str) -> None:
        self._sockets: dict[str, socket.socket] = {}
        tcp = self._listen("tcp 127.0.0.1", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
        tcp6 = self._listen("tcp [::1]", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
        udp = self._listen("udp 127.0.0.1", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
        abstract = f"sidebar-egress-{uuid.uuid4().hex}"
        self._listen("abstract unix", socket.AF_UNIX, socket.SOCK_STREAM, f"\0{abstract}")
        path = os.path.join(directory, "listener.sock")
        self._listen("unix path", socket.AF_UNIX, socket.SOCK_STREAM, path)
        os.chmod(path, 0o777)  # noqa: S103 - every uid could connect: only the sandbox may stop it
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.targets = Targets(
            tcp=int(tcp.getsockname()[1]),
            tcp6=int(tcp6.getsockname()[1]),
            udp=int(udp.getsockname()[1]),
            abstract=abstract,
            path=path,
            allowed=int(self._http.server_address[1]),
        )

    def _listen(self, name: str, family: int, kind: int, address: object) -> socket.socket:
        sock = socket.socket(family, kind)
        sock.bind(address)
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        self._sockets[name] = sock
        return sock

    def reached(self) -> list[str]:
        """The listeners something reached since the last call (their backlog is then emptied)."""
        ready, _, _ = select.select(list(self._sockets.values()), [], [], 0)
        names = [name for name, sock in self._sockets.items() if sock in ready]
        for sock in ready:
            if sock.type == socket.SOCK_STREAM:
                sock.accept()[0].close()
            else:
                sock.recv(65536)
        return names

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        for sock in self._sockets.values():
            sock.close()


@contextlib.contextmanager
def listeners() -> Iterator[Listeners]:
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)  # noqa: S103 - the sandbox uids must reach the socket path
        value = Listeners(directory)
        try:
            yield value
        finally:
            value.close()
