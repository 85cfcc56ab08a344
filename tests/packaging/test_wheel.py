"""The wheel, installed (not editable) into a fresh virtualenv by scripts/wheel.sh, the same
script the Containerfile's build stage runs: it holds every module and static file, every
module imports from site-packages, and each service's console script starts, answers and
stops cleanly on SIGTERM against the real RabbitMQ and FerretDB."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.infra import Infra
from tests.system.harness import ServiceProcess, base_env, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = {
    "shared": ROOT / "shared",
    "orchestrator": ROOT / "services" / "orchestrator",
    "executor": ROOT / "services" / "executor",
    "store": ROOT / "services" / "store",
}
BUILD_TIMEOUT_S = 600
ADMIN_KEY = "wheel-smoke-admin-key-0123456789"

# Imports every module of the installed packages and reports the ones that fail or that
# come from anywhere but the virtualenv (an editable install or the checkout would).
IMPORT_ALL = """
import importlib, json, pkgutil, sys
failed, outside = {}, []
for top in ("shared", "orchestrator", "executor", "store"):
    package = importlib.import_module(top)
    names = [top] + [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            failed[name] = repr(exc)
            continue
        if not (module.__file__ or "").startswith(sys.prefix + "/"):
            outside.append(f"{name}: {module.__file__}")
print(json.dumps({"failed": failed, "outside": outside}))
"""


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    sources: frozenset[str]  # the package files in the checkout when the wheel was built

    def script(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    # Not under pytest's tmp_path (mode 0700): the executor's widget uids read this venv.
    work = Path(tempfile.mkdtemp(prefix="sidebar-wheel-"))
    work.chmod(0o755)
    try:
        sources = _source_files()
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "wheel.sh"), str(work / "venv"), str(work / "dist")],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, f"scripts/wheel.sh failed:\n{result.stdout}\n{result.stderr}"
        (wheel,) = (work / "dist").glob("sidebar_widgets-*.whl")
        yield Installed(venv=work / "venv", wheel=wheel, sources=sources)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _source_files() -> frozenset[str]:
    """Every file the packages are made of, as the wheel names it (services/store/x -> store/x)."""
    files: set[str] = set()
    for package, directory in SOURCE_DIRS.items():
        for path in directory.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(f"{package}/{path.relative_to(directory).as_posix()}")
    return frozenset(files)


@pytest.mark.timeout(BUILD_TIMEOUT_S + 60)
def test_wheel_holds_every_module_and_static_file(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if ".dist-info/" not in name}
    assert sorted(installed.sources - shipped) == []
    assert sorted(shipped - installed.sources) == []


@pytest.mark.timeout(BUILD_TIMEOUT_S + 60)
def test_every_module_imports_from_the_virtualenv(installed: Installed) -> None:
    result = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-I", "-c", IMPORT_ALL],
        cwd=installed.venv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"failed": {}, "outside": []}


@dataclass(frozen=True)
class Service:
    script: str
    env: Callable[[], dict[str, str]]
    ready: Callable[[ServiceProcess, dict[str, str]], None]


def _store_env() -> dict[str, str]:
    return {"STORE_ADMIN_KEY": ADMIN_KEY, "STORE_HOST": "127.0.0.1", "STORE_PORT": str(free_port())}


def _store_ready(process: ServiceProcess, env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{env['STORE_PORT']}"
    wait_http(f"{base}/healthz", process, timeout=60)
    assert httpx.get(f"{base}/healthz").status_code == 200
    console = httpx.get(f"{base}/console")  # a page from the wheel's package data
    assert console.status_code == 200
    assert "<html" in console.text.lower()


def _metrics_ready(event: str, port_key: str) -> Callable[[ServiceProcess, dict[str, str]], None]:
    def ready(process: ServiceProcess, env: dict[str, str]) -> None:
        process.wait_for(lambda line: line.get("event") == event, timeout=60)
        metrics = httpx.get(f"http://127.0.0.1:{env[port_key]}/metrics", timeout=5)
        assert metrics.status_code == 200

    return ready


SERVICES = {
    "store": Service("sidebar-store", _store_env, _store_ready),
    "orchestrator": Service(
        "sidebar-orchestrator",
        lambda: {"ORCHESTRATOR_METRICS_PORT": str(free_port())},
        _metrics_ready("orchestrator.started", "ORCHESTRATOR_METRICS_PORT"),
    ),
    # The executor reports started only after its start-up probe ran a widget in the sandbox.
    "executor": Service(
        "sidebar-executor",
        lambda: {"EXECUTOR_METRICS_PORT": str(free_port()), "EXECUTOR_CONCURRENCY": "2"},
        _metrics_ready("executor.started", "EXECUTOR_METRICS_PORT"),
    ),
}


@pytest.mark.system
@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_console_script_starts_answers_and_stops_cleanly(installed: Installed, infra: Infra, name: str) -> None:
    service = SERVICES[name]
    extra = service.env()
    env = base_env({**infra.env(), **extra, "SECRETS_KEY": base64.b64encode(os.urandom(32)).decode()})
    process = ServiceProcess(f"wheel-{name}", [installed.script(service.script)], env).start()
    try:
        service.ready(process, extra)
    finally:
        code = process.stop(signal.SIGTERM)
    assert code == 0, "".join(process.raw[-30:])
