#!/usr/bin/env bash
# Installs what the project needs on the machine, when it is missing: the one place
# that knows it, called by the Makefile (`make run`, `make test`, `make install`,
# `make bench`) and by .ci/run.
#
#   scripts/setup.sh PART...
#
#   python    Debian's python3 with venv and headers, libseccomp2 (the executor's
#             sandbox), make, ca-certificates
#   services  rabbitmq-server (the broker, and rabbitmqctl, which the tests use for
#             a vhost per run); Go and the FerretDB build (.local/bin/ferretdb), unless
#             something already answers the MongoDB protocol at MONGODB_URL
#   browser   chromium, for tests/browser
#   bench     redis-server, for the Celery peer of `make bench`
#   validators  promtool (Debian's prometheus package, unpacked) and kustomize (built with
#             Go) into .local/bin, for the alert-rule and manifest tests
#
# Every step prints a progress line and its time (scripts/steps.sh). apt-get runs
# only when a package is missing: directly as root, through sudo when there is one,
# and otherwise the script stops and prints the command to run as root.
#
# Environment: MONGODB_URL, FERRETDB_BIN (see scripts/services.sh), GO_TOOLCHAIN
# (default go1.24.2: the toolchain fetched when the machine has no Go 1.21+).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/steps.sh
source "$ROOT/scripts/steps.sh"
trap 'rc=$?; if ((rc == 0)); then step_end; else step_failed "$rc"; fi' EXIT

GO_TOOLCHAIN="${GO_TOOLCHAIN:-go1.24.2}"
LOCAL_GO="$ROOT/.local/go"

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

# --- apt -----------------------------------------------------------------------

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]; }

# root_prefix: how this user runs a command as root ("" for root, sudo otherwise);
# fails when there is no way.
root_prefix() {
    if [[ "$(id -u)" == 0 ]]; then
        echo ""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "sudo -n"
    elif command -v sudo >/dev/null 2>&1 && [[ -t 0 ]]; then
        echo "sudo"
    else
        return 1
    fi
}

apt_install() {
    local -a packages=("$@")
    local command="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}" sudo
    if ! command -v apt-get >/dev/null 2>&1; then
        die "no apt-get here (this set-up knows Debian); install the equivalents of: ${packages[*]}"
    fi
    if ! sudo="$(root_prefix)"; then
        printf 'setup: error: missing Debian packages: %s\n' "${packages[*]}" >&2
        printf 'setup: installing them needs root, and there is no usable sudo. Run as root:\n\n    %s\n\n' "$command" >&2
        printf 'setup: then run the same command again.\n' >&2
        exit 1
    fi
    [[ "$sudo" != sudo ]] || say "running as $(id -un): using sudo, which may ask for your password"
    say "installing ${packages[*]}"
    # shellcheck disable=SC2086 # $sudo is empty or a command with its options
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null &&
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null; }; then
        die "apt-get failed; to retry by hand, as root: $command"
    fi
}

step_packages() {
    local -a wanted=("$@") missing=()
    local pkg
    step "apt packages"
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian system: make sure these are installed: ${wanted[*]}"
        return 0
    fi
    for pkg in "${wanted[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    else
        say "all present (${wanted[*]})"
    fi
}

# --- Go and FerretDB -------------------------------------------------------------

# go_minor GO: the minor version of a go binary (21 for go1.21.5), 0 if unknown.
go_minor() {
    "$1" env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p' | grep . || echo 0
}

find_go() {
    local candidate
    for candidate in "$(command -v go || true)" /usr/local/go/bin/go "$LOCAL_GO/bin/go"; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        # 1.21+ fetches the toolchain FerretDB's go.mod asks for by itself (GOTOOLCHAIN=auto).
        if (($(go_minor "$candidate") >= 21)); then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Debian's golang-go (1.19 on bookworm) is too old to build FerretDB, but it can
# fetch a newer toolchain: the Go project publishes toolchains as modules on the
# module proxy (golang.org/toolchain), which is how `go` 1.21+ switches itself.
fetch_go_toolchain() {
    local old_go module dir work
    old_go="$(command -v go || true)"
    if [[ -z "$old_go" ]]; then
        [[ -x /usr/lib/go/bin/go ]] || apt_install golang-go
        old_go="$(command -v go || echo /usr/lib/go/bin/go)"
    fi
    module="golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$(dpkg --print-architecture 2>/dev/null || echo amd64)"
    say "no Go 1.21+ here: fetching $module with $("$old_go" version | awk '{print $3}')"
    work="$(mktemp -d)"
    dir="$(cd "$work" && GOFLAGS=-mod=mod "$old_go" mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    rmdir "$work"
    [[ -n "$dir" && -f "$dir/bin/go" ]] || die "could not fetch $module; install Go 1.22+ by hand (https://go.dev/dl/) and run this again"
    # Module zips do not keep execute bits.
    chmod +x "$dir/bin/"* "$dir/pkg/tool/"*/*
    mkdir -p "$(dirname "$LOCAL_GO")"
    ln -sfn "$dir" "$LOCAL_GO"
}

step_ferretdb() {
    step "ferretdb"
    if bash "$ROOT/scripts/services.sh" answers mongodb; then
        say "something already answers the MongoDB protocol at ${MONGODB_URL:-mongodb://127.0.0.1:27017/}; no build needed"
        return 0
    fi
    if [[ -z "${FERRETDB_BIN:-}" ]] && command -v ferretdb >/dev/null 2>&1; then
        say "using $(command -v ferretdb)"
        return 0
    fi
    if bash "$ROOT/scripts/install-ferretdb.sh" --check; then
        return 0
    fi
    local go
    if ! go="$(find_go)"; then
        fetch_go_toolchain
        go="$(find_go)" || die "no working Go 1.21+ after fetching $GO_TOOLCHAIN"
    fi
    say "go: $("$go" version)"
    PATH="$(dirname "$go"):$PATH" bash "$ROOT/scripts/install-ferretdb.sh"
}

step_validators() {
    step "validators (promtool, kustomize)"
    if ! bash "$ROOT/scripts/install-promtool.sh"; then
        # apt-get download needs package lists; a machine that lacked nothing has none yet.
        local sudo
        sudo="$(root_prefix)" || die "promtool needs apt's package lists: run apt-get update as root, then this again"
        # shellcheck disable=SC2086 # $sudo is empty or a command with its options
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
        bash "$ROOT/scripts/install-promtool.sh"
    fi
    local go
    if ! go="$(find_go)"; then
        fetch_go_toolchain
        go="$(find_go)" || die "no working Go 1.21+ after fetching $GO_TOOLCHAIN"
    fi
    PATH="$(dirname "$go"):$PATH" bash "$ROOT/scripts/install-kustomize.sh"
}

# --- main ------------------------------------------------------------------------

main() {
    local -a packages=(make ca-certificates)
    local part python=0 services=0 browser=0 bench=0 validators=0
    (($#)) || set -- python
    for part in "$@"; do
        case "$part" in
            python) python=1 ;;
            services) services=1 ;;
            browser) browser=1 ;;
            bench) bench=1 ;;
            validators) validators=1 ;;
            *) die "unknown part '$part' (python, services, browser, bench, validators)" ;;
        esac
    done
    ((python)) && packages+=(python3 python3-venv python3-dev libseccomp2)
    ((services)) && packages+=(rabbitmq-server)
    ((browser)) && packages+=(chromium)
    ((bench)) && packages+=(redis-server)
    step_packages "${packages[@]}"
    ((services)) && step_ferretdb
    ((validators)) && step_validators
    return 0
}

main "$@"
