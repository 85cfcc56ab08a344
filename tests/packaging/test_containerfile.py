"""The Containerfile builds what the wheel smoke test checks and what deploy/k8s runs: its build
stage copies exactly scripts/wheel.sh's sources and runs that script, the image puts that
virtualenv's python first on PATH, the manifests run that image with one of its three commands,
and hadolint finds nothing to say."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the dev extras

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
SERVICES = ("store", "orchestrator", "executor")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in CONTAINERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _wheel_sources() -> set[str]:
    text = (ROOT / "scripts" / "wheel.sh").read_text()
    match = re.search(r"^SOURCES=\((.*)\)$", text, re.MULTILINE)
    assert match, "scripts/wheel.sh no longer defines SOURCES=(...)"
    return set(shlex.split(match.group(1)))


def _image_repository() -> str:
    match = re.search(r"^IMAGE \?= (\S+):\$\(VERSION\)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile no longer defines IMAGE ?= <repository>:$(VERSION)"
    return match.group(1)


def _containers() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "deploy" / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Deployment":
                for container in document["spec"]["template"]["spec"].get("containers", []):
                    found.append((f"{path.relative_to(ROOT)}: {container['name']}", container))
    return found


def test_build_stage_copies_the_wheel_sources_and_runs_the_smoke_tests_script() -> None:
    build = _stages()[0]
    copied: set[str] = set()
    for instruction, arguments in build:
        if instruction == "COPY":
            *sources, _destination = arguments.split()
            copied.update(source.rstrip("/") for source in sources)
    assert copied == _wheel_sources() | {"scripts/wheel.sh"}
    assert ("RUN", "bash scripts/wheel.sh /opt/sidebar /dist") in build


def test_runtime_stage_runs_the_virtualenvs_python_as_a_non_root_user() -> None:
    runtime = _stages()[-1]
    assert ("COPY", "--from=build /opt/sidebar /opt/sidebar") in runtime
    env = " ".join(arguments for instruction, arguments in runtime if instruction == "ENV")
    assert "PATH=/opt/sidebar/bin:$PATH" in env
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_build_context_admits_exactly_what_the_build_stage_copies() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "*"
    admitted = {line[1:] for line in lines if line.startswith("!")}
    assert admitted == _wheel_sources() | {"scripts/wheel.sh"}


def test_every_deployment_runs_the_image_with_one_of_its_three_commands() -> None:
    repository = _image_repository()
    commands = {f"python -m {name}": name for name in SERVICES} | {f"sidebar-{name}": name for name in SERVICES}
    served: set[str] = set()
    for where, container in _containers():
        if "image" in container:
            assert container["image"].rpartition(":")[0] == repository, where
        argv = container.get("command") or container.get("args")
        if argv is not None:
            assert " ".join(argv) in commands, f"{where}: {argv}"
            served.add(commands[" ".join(argv)])
    assert served == set(SERVICES)


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(CONTAINERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
