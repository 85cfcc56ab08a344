#!/usr/bin/env bash
# Build kustomize as .local/bin/kustomize (git-ignored), to render deploy/k8s/overlays/*
# offline in tests/unit/test_k8s_manifests.py.
#
# It is built from its Go module through the module proxy (`go install`), pinned below:
# no kubectl and no cluster are needed. A fresh machine with a warm module cache takes
# about 30 s on 2 cores; nothing happens when the pinned version is already installed.
#
# Environment:
#   KUSTOMIZE_VERSION  module version (default v5.7.1)
#   KUSTOMIZE_BIN      where to install (default <repo>/.local/bin/kustomize)
#   FORCE=1            build again even if that version is installed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${KUSTOMIZE_VERSION:-v5.7.1}"
OUT="${KUSTOMIZE_BIN:-$ROOT/.local/bin/kustomize}"
MODULE="sigs.k8s.io/kustomize/kustomize/v5"

log() { printf 'install-kustomize: %s\n' "$*"; }
die() { printf 'install-kustomize: error: %s\n' "$*" >&2; exit 1; }

if [[ "${FORCE:-0}" != 1 ]] && installed="$("$OUT" version 2>/dev/null)" && [[ "$installed" == "$VERSION" ]]; then
    log "$OUT is already installed ($installed); nothing to do"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
        export PATH="$PATH:/usr/local/go/bin"
    else
        die "go not found: install Go 1.22+ (https://go.dev/dl/, e.g. into /usr/local/go), then rerun $0"
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kustomize-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

start=$SECONDS
log "building kustomize $VERSION with $(go version | awk '{print $3}')"
mkdir -p "$(dirname "$OUT")"
# `go install module@version` ignores any go.mod around it; GOBIN puts the binary in $WORK first,
# so a failed build never leaves a half-written one at $OUT.
(cd "$WORK" && GOBIN="$WORK" GOFLAGS="-trimpath" go install "$MODULE@$VERSION")
[[ "$("$WORK/kustomize" version)" == "$VERSION" ]] || die "the built binary does not report $VERSION"
mv -f "$WORK/kustomize" "$OUT"
log "installed $OUT ($VERSION) in $((SECONDS - start))s"
