"""deploy/k8s validates offline against the Kubernetes schemas (kubernetes-validate ships them),
and its NetworkPolicies say what docs/sandbox.md says: default deny, and an executor that
reaches public addresses on the widget ports but no private, link-local or metadata address."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from executor.egress.policy import EgressPolicy

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"
FORBIDDEN = (
    "169.254.169.254", "169.254.1.1", "100.100.100.200", "10.0.0.1", "10.96.0.10", "172.16.0.1", "172.31.255.254",
    "192.168.0.1", "127.0.0.1", "0.0.0.0", "100.64.0.1", "224.0.0.1",
    "fd00:ec2::254", "fe80::1", "::1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1", "fd12::1", "ff02::1",
)  # fmt: skip


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((f"{path.name}: {document['kind']} {document['metadata']['name']}", document))
    return found


def _policies() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc["spec"] for _, doc in _documents() if doc["kind"] == "NetworkPolicy"}


def _executor_ip_blocks() -> list[tuple[dict[str, Any], list[int]]]:
    """(ipBlock, TCP ports) of every executor egress rule that names addresses."""
    blocks = []
    for rule in _policies()["executor"]["egress"]:
        ports = [port["port"] for port in rule.get("ports", [])]
        blocks += [(peer["ipBlock"], ports) for peer in rule["to"] if "ipBlock" in peer]
    return blocks


def _admits(block: dict[str, Any], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    network = ipaddress.ip_network(block["cidr"])
    if ip.version != network.version or ip not in network:
        return False
    return not any(ip in ipaddress.ip_network(excluded) for excluded in block.get("except", []))


@pytest.mark.parametrize(("name", "document"), _documents(), ids=[name for name, _ in _documents()])
def test_every_manifest_validates_against_the_kubernetes_schema(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_namespace_denies_all_traffic_by_default() -> None:
    default = _policies()["default-deny"]
    assert default["podSelector"] == {}
    assert sorted(default["policyTypes"]) == ["Egress", "Ingress"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_the_executor_may_not_reach_private_link_local_or_metadata_addresses(address: str) -> None:
    assert EgressPolicy().check(ipaddress.ip_address(address), 443).allowed is False, "the sandbox refuses it too"
    for block, _ in _executor_ip_blocks():
        assert not _admits(block, address), (address, block)


def test_the_executor_reaches_public_addresses_on_the_widget_ports_only() -> None:
    blocks = _executor_ip_blocks()
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert [ports for block, ports in blocks if _admits(block, address)] == [[80, 443]]
    config = next(doc for _, doc in _documents() if doc["kind"] == "ConfigMap")
    assert config["data"]["EXECUTOR_EGRESS_PORTS"] == "80,443", "the config and the policy open the same ports"


def test_only_the_store_and_the_orchestrator_reach_the_database() -> None:
    reaching = {
        name
        for name, spec in _policies().items()
        for rule in spec.get("egress", [])
        for peer in rule.get("to", [])
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "mongodb"
    }
    assert reaching == {"store", "orchestrator"}


def test_every_policy_selects_pods_that_a_deployment_runs() -> None:
    components = {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for _, doc in _documents()
        if doc["kind"] == "Deployment"
    }
    for name, spec in _policies().items():
        selected = spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        assert selected is None or selected in components, name
