"""The egress policy's address rules, checked on the checker itself: no test sends these
addresses a packet (metadata, link-local, private and public addresses are never targets)."""

from __future__ import annotations

import ipaddress

import pytest

from executor.egress.policy import EgressPolicy, classify
from executor.egress.supervisor import literal_addresses

POLICY = EgressPolicy.parse([80, 443], ["127.0.0.1:8900", "10.20.0.0/16:5432", "[::1]:8901"])


def _check(address: str, port: int) -> tuple[bool, str]:
    decision = POLICY.check(ipaddress.ip_address(address), port)
    return decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "metadata service"),
        ("100.100.100.200", "metadata service"),
        ("fd00:ec2::254", "metadata service"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::fb", "multicast"),
        ("100.64.0.1", "not a public address"),
        ("240.0.0.1", "private"),
    ],
)
def test_non_public_addresses_are_refused_on_every_port_with_their_reason(address: str, reason: str) -> None:
    for port in (80, 443, 5672):
        assert _check(address, port) == (False, reason)


@pytest.mark.parametrize(
    ("address", "inner", "reason"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "169.254.169.254", "metadata service"),
        ("::ffff:10.0.0.1", "10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254", "metadata service"),
        ("64:ff9b:1::7f00:1", "127.0.0.1", "loopback"),
        ("2002:a9fe:a9fe::1", "169.254.169.254", "metadata service"),
        ("::7f00:1", "127.0.0.1", "loopback"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1", "private"),
    ],
)
def test_ipv6_forms_of_an_ipv4_address_are_judged_as_that_address(address: str, inner: str, reason: str) -> None:
    assert _check(address, 443) == (False, f"{reason}, as {inner} inside IPv6")


def test_public_addresses_are_open_on_the_allowed_ports_only() -> None:
    assert _check("93.184.216.34", 443) == (True, "")
    assert _check("93.184.216.34", 80) == (True, "")
    assert _check("2606:2800:220:1:248:1893:25c8:1946", 443) == (True, "")
    assert _check("::ffff:93.184.216.34", 443) == (True, "")
    assert _check("93.184.216.34", 22) == (False, "port 22 is not open to widgets")
    assert _check("93.184.216.34", 5672) == (False, "port 5672 is not open to widgets")


def test_an_allow_list_entry_opens_exactly_its_address_and_port() -> None:
    assert _check("127.0.0.1", 8900) == (True, "")
    assert _check("::ffff:127.0.0.1", 8900) == (True, "")
    assert _check("127.0.0.2", 8900) == (False, "loopback")
    assert _check("127.0.0.1", 8901) == (False, "loopback")
    assert _check("::1", 8901) == (True, "")
    assert _check("10.20.3.4", 5432) == (True, "")
    assert _check("10.21.3.4", 5432) == (False, "private")
    assert _check("10.20.3.4", 443) == (False, "private")


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("0:0:0:0:0:ffff:a9fe:a9fe", "::ffff:169.254.169.254"),
    ],
)
def test_numeric_spellings_resolve_without_dns_to_the_address_the_policy_judges(spelling: str, address: str) -> None:
    resolved = literal_addresses(spelling, 80)
    assert resolved is not None
    assert [found for _, found, _ in resolved] == [ipaddress.ip_address(address)]
    assert not POLICY.check(resolved[0][1], 80).allowed


def test_a_name_is_not_a_literal() -> None:
    assert literal_addresses("metadata.google.internal", 80) is None
    assert literal_addresses("localhost", 80) is None


def test_classify_leaves_public_addresses_alone() -> None:
    assert classify(ipaddress.ip_address("1.1.1.1")) is None
    assert classify(ipaddress.ip_address("2001:4860:4860::8888")) is None
