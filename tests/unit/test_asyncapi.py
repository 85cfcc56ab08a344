"""docs/asyncapi.yaml is what scripts/asyncapi.py generates from the contracts and the topology,
and a valid AsyncAPI 3.0 document.

tests/schemas/asyncapi-3.0.0.json is schemas/3.0.0-without-$id.json of asyncapi/spec-json-schemas
(v6.11.1, commit 7dd3990, Apache-2.0), minified: the official JSON schema, kept so the check runs
offline.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import yaml

from shared import topology

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
SCHEMA = ROOT / "tests" / "schemas" / "asyncapi-3.0.0.json"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("asyncapi_generator", ROOT / "scripts" / "asyncapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def test_the_committed_document_is_the_generated_one() -> None:
    assert DOCUMENT.read_text() == _generator().render(), (
        "docs/asyncapi.yaml disagrees with the contracts or the topology: run python scripts/asyncapi.py"
    )


def test_the_document_is_valid_asyncapi_3() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(_document())]
    assert errors == []


def test_every_exchange_and_shared_queue_of_the_topology_is_described() -> None:
    channels = _document()["channels"].values()
    exchanges = {channel["bindings"]["amqp"]["exchange"]["name"] for channel in channels if "exchange" in str(channel)}
    queues = {channel["address"] for channel in channels if channel["bindings"]["amqp"]["is"] == "queue"}
    assert exchanges == {topology.EXCHANGE, topology.INTERNAL_EXCHANGE, topology.DEAD_LETTER_EXCHANGE}
    assert {spec.name for spec in topology.QUEUES} <= queues


def test_every_message_payload_is_a_contract_model_schema() -> None:
    components = _document()["components"]
    for name, message in components["messages"].items():
        if name == "DeadLetter":
            continue
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
        assert components["schemas"][name]["additionalProperties"] is False, f"{name} forbids unknown fields"


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def test_every_reference_resolves_inside_the_document() -> None:
    document = _document()
    references = set(_references(document))
    assert references
    for reference in references:
        node: Any = document
        for key in reference.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and key in node, reference
            node = node[key]
