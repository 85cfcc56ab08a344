"""The in-process egress guard: every socket connection is checked against the
address actually connected to (after DNS, on every redirect hop), not the name asked for.

It lives inside the widget process, so native code could bypass it; Landlock's
port rules (kernel) back it up, and the cluster's NetworkPolicy is the outer layer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressDenied(PermissionError):
    """Raised inside widget code for a forbidden connection."""


# The last refusal in this process: HTTP libraries wrap EgressDenied in their own
# errors, and the sandbox still wants to report the run as egress_denied.
denials: list[str] = []


@dataclass(frozen=True)
class EgressPolicy:
    allowed: tuple[tuple[_Network, int], ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """``host:port`` entries where host is an IP or a CIDR block, e.g. ``127.0.0.1:8900``."""
        allowed = []
        for entry in entries:
            host, _, port = entry.strip().rpartition(":")
            allowed.append((ipaddress.ip_network(host.strip("[]"), strict=False), int(port)))
        return cls(tuple(allowed))

    def permits(self, address: _Address, port: int) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network and port == allowed_port for network, allowed_port in self.allowed):
            return True
        return address.is_global and not address.is_multicast


def _checked(policy: EgressPolicy, family: int, address: Any) -> Any:
    """The address to really connect to: resolved once, checked, and used as is,
    so a second DNS answer (rebinding) cannot slip in between check and connect."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        if family == socket.AF_UNIX:
            raise EgressDenied("widgets may not use local sockets")
        return address
    host, port = address[0], int(address[1])
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    for info in infos:
        resolved = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not policy.permits(resolved, port):
            denials.append(f"connection to {resolved}:{port} is not allowed (private, loopback or link-local)")
            raise EgressDenied(denials[-1])
    return (infos[0][4][0], port, *address[2:])


def install(policy: EgressPolicy) -> None:
    """Wrap connect, connect_ex and sendto on every socket created from now on."""
    base = socket.socket

    class GuardedSocket(base):  # type: ignore[misc, valid-type]
        def connect(self, address: Any) -> None:
            super().connect(_checked(policy, self.family, address))

        def connect_ex(self, address: Any) -> int:
            return int(super().connect_ex(_checked(policy, self.family, address)))

        def sendto(self, data: Any, *args: Any) -> int:
            return int(super().sendto(data, *args[:-1], _checked(policy, self.family, args[-1])))

    socket.socket = GuardedSocket  # type: ignore[misc]
