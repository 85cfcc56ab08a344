"""Refresh deploy/k8s/schemas: the OpenAPI schemas of the custom resources deploy/k8s uses.

tests/unit/test_k8s_manifests.py validates KEDA's and the Prometheus Operator's objects against
these, as kubernetes-validate does the built-in kinds. Each CRD comes from its project's Go
module, fetched through the Go module proxy at the pinned version (`go mod download`), and each
served version's ``openAPIV3Schema`` is written as ``<kind>-<group's first label>-<version>.json``,
kubernetes-validate's naming. Run: .venv/bin/python scripts/update-crd-schemas.py
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy" / "k8s" / "schemas"
SOURCES = {
    "github.com/kedacore/keda/v2@v2.20.0": [
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ],
    "github.com/prometheus-operator/prometheus-operator@v0.85.0": [
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
    ],
}


def module_dir(module: str) -> Path:
    found = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True, check=True)
    return Path(json.loads(found.stdout)["Dir"])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for module, paths in SOURCES.items():
        source = module_dir(module)
        for path in paths:
            crd = yaml.safe_load((source / path).read_text())
            kind, group = crd["spec"]["names"]["kind"], crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                name = f"{kind.lower()}-{group.split('.')[0]}-{version['name']}.json"
                schema = version["schema"]["openAPIV3Schema"]
                schema["x-source"] = f"{module} {path}"
                (OUT / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(f"{name}: {module} {path}")


if __name__ == "__main__":
    main()
