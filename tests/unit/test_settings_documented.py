"""Settings are documented by construction: every field of each service's settings class is in
docs/operations.md's settings tables with its real default, in the ConfigMap (or, for secrets,
in the Secret), and read by the service that declares it; and nothing stale is left behind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from executor.settings import ExecutorSettings
from orchestrator.settings import OrchestratorSettings
from store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]
CONFIG_ENV = ROOT / "deploy" / "k8s" / "base" / "config.env"
SECRET_EXAMPLE = ROOT / "deploy" / "k8s" / "secret.example.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
SERVICES: dict[str, type[BaseSettings]] = {
    "orchestrator": OrchestratorSettings,
    "executor": ExecutorSettings,
    "store": StoreSettings,
}
# Fields a service inherits but does not use, and why; anything else unread is a setting with no effect.
INHERITED_UNUSED = {("store", "metrics_host"): "the store serves /metrics on its own HTTP port (STORE_HOST)"}
NOT_A_DEFAULT = {"unset", "derived"}
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", re.M)

FIELDS = sorted({(service, name) for service, cls in SERVICES.items() for name in cls.model_fields})


def _variable(name: str) -> str:
    return name.upper()


def _is_secret(cls: type[BaseSettings], name: str) -> bool:
    return SecretStr in (cls.model_fields[name].annotation, *getattr(cls.model_fields[name].annotation, "__args__", ()))


def _documented() -> dict[str, set[str]]:
    """Variable -> the default cells of its rows in the Settings section (a variable may have a row per service)."""
    text = OPERATIONS.read_text()
    start = text.index("\n## Settings\n")
    section = text[start : text.index("\n## ", start + 1)]
    rows: dict[str, set[str]] = {}
    for variable, default in ROW.findall(section):
        rows.setdefault(variable, set()).add(default.strip())
    return rows


def _config_map() -> dict[str, str]:
    entries = [line for line in CONFIG_ENV.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in entries)


def _secret_keys() -> set[str]:
    documents = [doc for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text()) if doc]
    credentials = next(doc for doc in documents if doc["metadata"]["name"] == "sidebar-credentials")
    return set(credentials["stringData"])


def _settings_reads(service: str) -> set[str]:
    """Attribute names read off a settings object (``settings.x``, ``deps.settings.x``, or ``self.x``
    inside the settings module) anywhere in the service's package."""
    package = ROOT / "services" / service
    reads: set[str] = set()
    for path in package.rglob("*.py"):
        in_settings_module = path == package / "settings.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (
                (isinstance(owner, ast.Name) and owner.id == "settings")
                or (isinstance(owner, ast.Attribute) and owner.attr in ("settings", "_settings"))
                or (in_settings_module and isinstance(owner, ast.Name) and owner.id == "self")
            ):
                reads.add(node.attr)
    return reads


@pytest.mark.parametrize(("service", "name"), FIELDS, ids=[f"{s}:{n}" for s, n in FIELDS])
def test_every_setting_is_in_the_operations_guide(service: str, name: str) -> None:
    assert _variable(name) in _documented(), f"add {_variable(name)} ({service}) to docs/operations.md#settings"


@pytest.mark.parametrize(("service", "name"), FIELDS, ids=[f"{s}:{n}" for s, n in FIELDS])
def test_the_guide_states_each_settings_real_default(service: str, name: str) -> None:
    field = SERVICES[service].model_fields[name]
    for cell in _documented().get(_variable(name), set()):
        if field.is_required():
            assert cell == "required", (name, cell)
        elif field.default is None:
            assert cell in NOT_A_DEFAULT, (name, cell)
        else:
            documented = cell.strip("`")
            default = field.default.get_secret_value() if isinstance(field.default, SecretStr) else field.default
            if default == "":
                assert cell == "empty", (name, cell)
            elif isinstance(default, bool):
                assert documented == str(default).lower(), (name, cell)
            elif isinstance(default, int | float):
                assert float(documented) == default, (name, cell)
            else:
                assert documented == default, (name, cell)


def test_the_guide_documents_no_setting_that_does_not_exist() -> None:
    known = {_variable(name) for _, name in FIELDS}
    assert set(_documented()) - known == set()


@pytest.mark.parametrize(("service", "name"), FIELDS, ids=[f"{s}:{n}" for s, n in FIELDS])
def test_every_setting_has_a_key_in_the_config_map_or_the_secret(service: str, name: str) -> None:
    if _is_secret(SERVICES[service], name):
        assert _variable(name) in _secret_keys(), f"add {_variable(name)} to deploy/k8s/secret.example.yaml"
        assert _variable(name) not in _config_map(), "secrets never go in the ConfigMap"
    else:
        assert _variable(name) in _config_map(), f"add {_variable(name)} to deploy/k8s/base/config.env"


def test_the_config_map_and_the_secret_hold_nothing_but_settings() -> None:
    known = {_variable(name) for _, name in FIELDS}
    assert set(_config_map()) - known == set()
    assert _secret_keys() - known == set()


@pytest.mark.parametrize(("service", "name"), FIELDS, ids=[f"{s}:{n}" for s, n in FIELDS])
def test_every_setting_is_read_by_the_service_that_has_it(service: str, name: str) -> None:
    if (service, name) in INHERITED_UNUSED:
        assert name not in _settings_reads(service), f"{name} is read after all: drop it from INHERITED_UNUSED"
        return
    assert name in _settings_reads(service), f"{_variable(name)} has no effect on the {service}: read it or drop it"


@pytest.mark.parametrize("service", SERVICES)
def test_the_config_map_is_valid_settings_for_every_service(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICES[service].model_fields:
        monkeypatch.delenv(_variable(name), raising=False)
    for key, value in _config_map().items():
        monkeypatch.setenv(key, value)
    required = {"STORE_ADMIN_KEY": "a-key-of-at-least-16-chars"} if service == "store" else {}
    for key, value in required.items():
        monkeypatch.setenv(key, value)

    SERVICES[service]()
