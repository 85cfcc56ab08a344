#!/usr/bin/env bash
# Builds the project's wheel and installs it, not editable, into a fresh virtualenv:
# the same commands for the Containerfile's build stage and for the wheel smoke test
# (tests/packaging/test_wheel.py), so what the test starts is what the image runs.
#
#   scripts/wheel.sh VENV DIST
#
# VENV  the virtualenv to create (it must not exist yet); the image copies it whole
# DIST  where the wheel is written (sidebar_widgets-<version>-py3-none-any.whl)
#
# The wheel is built from a copy of the packaged sources only, so a stale build/ or
# egg-info in the checkout can neither add nor hide a file. PYTHON picks the
# interpreter the venv is based on (default: Debian's /usr/bin/python3, which the
# sandbox's per-slot uids can read; see the Makefile).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Everything pyproject.toml reads to build the wheel.
SOURCES=(pyproject.toml README.md LICENSE shared services)

die() {
    printf 'wheel: error: %s\n' "$*" >&2
    exit 1
}

(($# == 2)) || die "usage: $0 VENV DIST"
VENV="$1"
DIST="$2"
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=/usr/bin/python3
    [[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)" || die "python3 not found"
fi
[[ ! -e "$VENV" ]] || die "$VENV already exists; the wheel goes into a fresh virtualenv"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

printf 'wheel: virtualenv %s from %s\n' "$VENV" "$PYTHON"
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)

printf 'wheel: building from a copy of %s\n' "${SOURCES[*]}"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - "${SOURCES[@]}" | tar -C "$work" -xf -
mkdir -p "$DIST"
"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$work/dist" "$work"
wheels=("$work"/dist/*.whl)
((${#wheels[@]} == 1)) || die "expected one wheel, got: ${wheels[*]}"
cp "${wheels[0]}" "$DIST/"
wheel="$DIST/$(basename "${wheels[0]}")"

printf 'wheel: installing %s\n' "$wheel"
"${pip[@]}" install --quiet "$wheel"
"${pip[@]}" check
printf 'wheel: %s installed in %s\n' "$(basename "$wheel")" "$VENV"
