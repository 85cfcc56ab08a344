"""The egress policy: which resolved address and port a widget may connect to.

Judged on the address actually connected to, never on a name. Public unicast
addresses are open on the allowed ports; everything else (loopback, private,
link-local and the metadata services, carrier-grade NAT, multicast, reserved,
and IPv6 forms that embed such an IPv4 address) is closed unless an operator's
allow-list entry names it with its port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),  # AWS, GCP, Azure, OpenStack, Oracle
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS over IPv6
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 address stands for (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in network for network in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def classify(address: Address) -> str | None:
    """Why an address is not public (``"loopback"``, ``"metadata"`` ...), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = classify(inner)
            return f"{reason}, as {inner} inside IPv6" if reason else None
    if any(address in network for network in _METADATA):
        return "metadata service"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for reason, matched in checks:
        if matched:
            return reason
    return None if address.is_global else "not a public address"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class EgressPolicy:
    public_ports: frozenset[int] = frozenset({80, 443})
    allowed: tuple[tuple[Network, int], ...] = ()

    @classmethod
    def parse(cls, ports: Iterable[int], entries: Iterable[str]) -> EgressPolicy:
        """``entries`` are ``host:port`` where host is an IP or a CIDR block, e.g. ``127.0.0.1:8900``."""
        allowed = []
        for entry in entries:
            host, _, port = entry.strip().rpartition(":")
            allowed.append((ipaddress.ip_network(host.strip("[]"), strict=False), int(port)))
        return cls(frozenset(ports), tuple(allowed))

    def check(self, address: Address, port: int) -> Decision:
        """May a widget open a TCP connection to ``address:port``?"""
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # an entry for 127.0.0.1 also covers ::ffff:127.0.0.1
        for network, allowed_port in self.allowed:
            if port == allowed_port and any(
                candidate.version == network.version and candidate in network for candidate in candidates
            ):
                return Decision(True)
        reason = classify(address)
        if reason is not None:
            return Decision(False, reason)
        if port not in self.public_ports:
            return Decision(False, f"port {port} is not open to widgets")
        return Decision(True)
