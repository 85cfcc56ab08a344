"""deploy/k8s as kustomize renders it, offline. Both overlays validate strictly: the built-in kinds
against the Kubernetes schemas kubernetes-validate ships, KEDA's and the Prometheus Operator's
objects against their CRDs' schemas kept in deploy/k8s/schemas. And the manifests say what the
services and docs say: an executor autoscaled on its queue with no replicas pinned, probes on
the services' health endpoints, a disruption budget per service, grace periods that cover a
drain, and NetworkPolicies that keep the executor off private, link-local and metadata addresses.
"""

from __future__ import annotations

import functools
import importlib.resources
import ipaddress
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from executor.egress.policy import EgressPolicy
from shared.contracts.jobs import MAX_TIMEOUT_S
from shared.health import LIVENESS_PATH, LOOP_ANSWER_TIMEOUT_S, READINESS_PATH
from shared.topology import WIDGET_JOBS_QUEUE

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.33.0"
KUSTOMIZE_VERSION = "v5.7.1"  # scripts/install-kustomize.sh builds it
# The first build compiles kustomize (about 30 s with a warm Go module cache, more on a fresh machine).
BUILD_TIMEOUT_S = 900
FORBIDDEN = (
    "169.254.169.254", "169.254.1.1", "100.100.100.200", "10.0.0.1", "10.96.0.10", "172.16.0.1", "172.31.255.254",
    "192.168.0.1", "127.0.0.1", "0.0.0.0", "100.64.0.1", "224.0.0.1",
    "fd00:ec2::254", "fe80::1", "::1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1", "fd12::1", "ff02::1",
)  # fmt: skip
# What each service's drain must cover beyond the longest widget run: a sidebar's deadline
# margin (orchestrator), a Run Test's wait margin (store).
DRAIN_MARGIN_SETTING = {"orchestrator": "SIDEBAR_DEADLINE_MARGIN_S", "store": "STORE_TEST_RUN_MARGIN_S"}
SERVICE_PORT_SETTING = {
    "store": "STORE_PORT",
    "orchestrator": "ORCHESTRATOR_METRICS_PORT",
    "executor": "EXECUTOR_METRICS_PORT",
}

Document = dict[str, Any]

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)


# --- rendering -----------------------------------------------------------------------------------


@functools.cache
def _kustomize() -> str:
    """The pinned kustomize: KUSTOMIZE_BIN, or .local/bin/kustomize, built by the install script if missing."""
    binary = os.environ.get("KUSTOMIZE_BIN", str(ROOT / ".local" / "bin" / "kustomize"))
    installed = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-kustomize.sh")],
        env={**os.environ, "KUSTOMIZE_BIN": binary, "KUSTOMIZE_VERSION": KUSTOMIZE_VERSION},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert installed.returncode == 0, f"kustomize is needed to render deploy/k8s:\n{installed.stderr}"
    return binary


@functools.cache
def rendered(overlay: str) -> tuple[Document, ...]:
    built = subprocess.run(
        [_kustomize(), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, f"kustomize build overlays/{overlay} failed:\n{built.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(built.stdout) if doc)


def _of_kind(overlay: str, kind: str) -> dict[str, Document]:
    return {doc["metadata"]["name"]: doc for doc in rendered(overlay) if doc["kind"] == kind}


def _config(overlay: str) -> dict[str, str]:
    (config_map,) = _of_kind(overlay, "ConfigMap").values()
    return dict(config_map["data"])


def _container(deployment: Document) -> Document:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


# --- validation ----------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """A CRD's structural schema as strict JSON Schema, as kubernetes-validate's strict schemas are:
    objects refuse unknown fields unless the CRD preserves them, and ``nullable`` admits null."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    preserved = strict.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in strict and "additionalProperties" not in strict and not preserved:
        strict["additionalProperties"] = False
    if strict.pop("nullable", False) and "type" in strict:
        strict["type"] = [strict["type"], "null"]
    return strict


@functools.cache
def _kubernetes_definitions() -> Resource[Any]:
    bundled = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = bundled / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json"
    return Resource.from_contents(json.loads(definitions.read_text()))


@functools.cache
def _crd_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    group, _, version = api_version.rpartition("/")
    path = SCHEMAS / f"{kind.lower()}-{group.split('.')[0]}-{version}.json"
    if not path.exists():
        return None
    schema = _strict(json.loads(path.read_text()))
    schema["$id"] = f"https://kubernetes.io/api/{kind.lower()}/{group}/{version}"
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["properties"] |= {
        "apiVersion": {"const": api_version},
        "kind": {"const": kind},
        # The same strict ObjectMeta the built-in kinds are checked against.
        "metadata": {"$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
    }
    definitions = Registry().with_resource("https://kubernetes.io/api/_definitions.json", _kubernetes_definitions())
    return jsonschema.Draft202012Validator(schema, registry=definitions)


def validate(document: Document) -> None:
    """Built-in kinds through kubernetes-validate; custom resources through their CRD's schema.
    A kind with neither fails: kubernetes-validate's own command only warns and passes it."""
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        validator = _crd_validator(document["kind"], document["apiVersion"])
        assert validator is not None, f"no schema for {document['apiVersion']} {document['kind']} in {SCHEMAS}"
        validator.validate(document)


def _ids(overlay: str) -> list[str]:
    return [f"{overlay}:{doc['kind']}/{doc['metadata']['name']}" for doc in rendered(overlay)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay: str) -> None:
    for name, document in zip(_ids(overlay), rendered(overlay), strict=True):
        try:
            validate(document)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_both_overlays_render_the_autoscaler_and_the_prometheus_operator_objects() -> None:
    for overlay in OVERLAYS:
        kinds = {doc["kind"] for doc in rendered(overlay)}
        assert {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"} <= kinds, overlay


def test_the_secrets_example_validates_too() -> None:
    for document in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()):
        validate(document)


@pytest.mark.parametrize(
    ("path", "wrong"),
    [
        (("spec", "triggers", 0, "metadata"), "not a map"),  # a wrong type
        (("spec", "advanced", "horizontalPodAutoscalerConfig", "behaviour"), {}),  # a misspelt field
        (("spec", "minReplicas"), 1),  # the HPA's name, not KEDA's
        (("metadata", "labelz"), {}),  # strict ObjectMeta
    ],
)
def test_a_wrong_scaled_object_is_refused(path: tuple[Any, ...], wrong: Any) -> None:
    scaled = json.loads(json.dumps(_of_kind("prod", "ScaledObject")["executor"]))
    *parents, last = path
    target = functools.reduce(lambda node, key: node[key], parents, scaled)
    target[last] = wrong
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_a_kind_without_a_schema_fails_instead_of_passing_unchecked() -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    with pytest.raises(AssertionError, match="no schema"):
        validate(unknown)


# --- autoscaling, disruption, probes, drain ------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_executor_scales_on_its_queue_counting_unacked_jobs(overlay: str) -> None:
    scaled = _of_kind(overlay, "ScaledObject")["executor"]
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]

    assert scaled["spec"]["scaleTargetRef"]["name"] in _of_kind(overlay, "Deployment")
    assert (trigger["type"], metadata["mode"], metadata["queueName"]) == ("rabbitmq", "QueueLength", WIDGET_JOBS_QUEUE)
    assert metadata["protocol"] == "http", "over AMQP, KEDA counts ready messages only, never the unacked"
    assert metadata.get("excludeUnacknowledged", "false") == "false"
    assert metadata["value"] == _config(overlay)["EXECUTOR_CONCURRENCY"], "one replica's worth: its prefetch"
    assert trigger["authenticationRef"]["name"] in _of_kind(overlay, "TriggerAuthentication")
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_replicas_are_pinned_where_an_autoscaler_owns_the_count(overlay: str) -> None:
    scaled = {doc["spec"]["scaleTargetRef"]["name"] for doc in _of_kind(overlay, "ScaledObject").values()}
    scaled |= {doc["spec"]["scaleTargetRef"]["name"] for doc in _of_kind(overlay, "HorizontalPodAutoscaler").values()}
    assert scaled == {"executor"}
    for name in scaled:
        assert "replicas" not in _of_kind(overlay, "Deployment")[name]["spec"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_disruption_budget_that_lets_drains_through(overlay: str) -> None:
    budgets = _of_kind(overlay, "PodDisruptionBudget").values()
    for deployment in _of_kind(overlay, "Deployment").values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert budget["spec"] == budget["spec"] | {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_health_endpoints_on_the_services_own_port(overlay: str) -> None:
    config = _config(overlay)
    for name, deployment in _of_kind(overlay, "Deployment").items():
        container = _container(deployment)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        paths = {probe: container[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe")}
        assert paths == {"startupProbe": READINESS_PATH, "readinessProbe": READINESS_PATH}, name
        assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert ports[container[probe]["httpGet"]["port"]] == int(config[SERVICE_PORT_SETTING[name]]), (name, probe)
            assert container[probe]["timeoutSeconds"] > LOOP_ANSWER_TIMEOUT_S, "the service answers first, with why"
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] > float(config["BROKER_CONNECT_TIMEOUT_S"]), (
            f"{name}: the service gives up on the broker by itself before the kubelet restarts it"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_periods_cover_the_longest_widget_and_a_drain(overlay: str) -> None:
    config = _config(overlay)
    drain = float(config["DRAIN_TIMEOUT_S"])
    for name, deployment in _of_kind(overlay, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        margin = float(config[DRAIN_MARGIN_SETTING[name]]) if name in DRAIN_MARGIN_SETTING else 0.0
        pause = _container(deployment).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        assert drain >= MAX_TIMEOUT_S + margin, f"{name}: DRAIN_TIMEOUT_S must let the longest work in flight end"
        assert pod["terminationGracePeriodSeconds"] > pause + drain, f"{name}: killed before its drain ends"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_store_pauses_before_it_stops_listening(overlay: str) -> None:
    """Endpoints are removed asynchronously: the pause keeps it serving until proxies have caught up."""
    pre_stop = _container(_of_kind(overlay, "Deployment")["store"])["lifecycle"]["preStop"]
    assert pre_stop["sleep"]["seconds"] >= 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_reads_the_config_map_and_the_credentials_it_needs(overlay: str) -> None:
    (config_name,) = _of_kind(overlay, "ConfigMap")
    secret = next(d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d)
    for name, deployment in _of_kind(overlay, "Deployment").items():
        container = _container(deployment)
        sources = container["envFrom"]
        assert {"configMapRef": {"name": config_name}} in sources, name
        for variable in container.get("env", []):
            reference = variable["valueFrom"]["secretKeyRef"]
            assert (reference["name"], variable["name"]) == (secret["metadata"]["name"], reference["key"])
            assert reference["key"] in secret["stringData"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_monitor_scrapes_ports_the_services_name(overlay: str) -> None:
    (monitor,) = _of_kind(overlay, "PodMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    named = {
        port["name"]
        for deployment in _of_kind(overlay, "Deployment").values()
        if selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
        for port in _container(deployment)["ports"]
    }
    assert {endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]} == named == {"http", "metrics"}


# --- network policies ----------------------------------------------------------------------------


def _policies(overlay: str = "prod") -> dict[str, Document]:
    return {name: doc["spec"] for name, doc in _of_kind(overlay, "NetworkPolicy").items()}


def _executor_ip_blocks() -> list[tuple[Document, list[int]]]:
    """(ipBlock, TCP ports) of every executor egress rule that names addresses."""
    blocks = []
    for rule in _policies()["executor"]["egress"]:
        ports = [port["port"] for port in rule.get("ports", [])]
        blocks += [(peer["ipBlock"], ports) for peer in rule["to"] if "ipBlock" in peer]
    return blocks


def _admits(block: Document, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    network = ipaddress.ip_network(block["cidr"])
    if ip.version != network.version or ip not in network:
        return False
    return not any(ip in ipaddress.ip_network(excluded) for excluded in block.get("except", []))


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
    for overlay in OVERLAYS:
        assert _config(overlay)["EXECUTOR_EGRESS_PORTS"] == "80,443", "the config and the policy open the same ports"


def test_only_the_store_and_the_orchestrator_reach_the_database() -> None:
    reaching = {
        name
        for name, spec in _policies().items()
        for rule in spec.get("egress", [])
        for peer in rule.get("to", [])
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "mongodb"
    }
    assert reaching == {"store", "orchestrator"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_policy_selects_pods_that_a_deployment_runs(overlay: str) -> None:
    components = {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for doc in _of_kind(overlay, "Deployment").values()
    }
    for name, spec in _policies(overlay).items():
        selected = spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        assert selected is None or selected in components, name
