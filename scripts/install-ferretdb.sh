#!/usr/bin/env bash
# Build FerretDB (MongoDB wire-compatible server, SQLite backend) from the Go
# module proxy and install it as .local/bin/ferretdb (git-ignored).
#
# Why not `go install ...@version`: the proxy refuses the `@v/list` call that
# `go install` makes for its deprecation check (403), and the module zip ships
# an empty build/version/version.txt, which makes the binary panic at start-up
# ("Invalid build/version/version.txt file content"). So we fetch the module
# with `go get`, copy it, fill in version.txt and build it through a replace
# directive.
#
# It applies the patches in scripts/ferretdb/ (each says why), and records them
# beside the binary (<binary>.build), so a changed patch set rebuilds it:
# - sqlite-id-index.patch: upstream 1.24 indexes `_id` under an expression that
#   differs from the one its queries use, so SQLite never uses the index and
#   every command by `_id` scans its collection (`explain` shows SCAN). An update
#   by `_id` cost 1 ms on an empty collection and 55 ms at 10 000 documents.
#
# Environment:
#   FERRETDB_VERSION  module version to build (default v1.24.2)
#   FERRETDB_BIN      where to install (default <repo>/.local/bin/ferretdb)
#   FORCE=1           rebuild even if a working binary is already installed
#
# `install-ferretdb.sh --check` only tells (exit 0) whether that version is installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${FERRETDB_VERSION:-v1.24.2}"
OUT="${FERRETDB_BIN:-$ROOT/.local/bin/ferretdb}"
MODULE="github.com/FerretDB/FerretDB"
PATCHES=("$ROOT"/scripts/ferretdb/*.patch)
# What a build is: the version and the patches applied to it.
BUILD="$VERSION $(cat "${PATCHES[@]}" | sha256sum | cut -c1-16)"

log() { printf 'install-ferretdb: %s\n' "$*"; }
die() { printf 'install-ferretdb: error: %s\n' "$*" >&2; exit 1; }

if [[ "${FORCE:-0}" != 1 && -x "$OUT" ]]; then
    if installed="$("$OUT" --version 2>/dev/null | awk '/^version:/ {print $2}')" && [[ -n "$installed" ]]; then
        if [[ "$installed" == "$VERSION" && "$(cat "$OUT.build" 2>/dev/null)" == "$BUILD" ]]; then
            log "$OUT is already installed ($installed, patched); nothing to do"
            exit 0
        fi
        [[ "${1:-}" == --check ]] || log "$OUT is $installed, wanted $VERSION with scripts/ferretdb/*.patch: rebuilding"
    else
        [[ "${1:-}" == --check ]] || log "$OUT exists but \`--version\` fails: rebuilding"
    fi
fi
[[ "${1:-}" != --check ]] || exit 1

if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
        export PATH="$PATH:/usr/local/go/bin"
    elif [[ -x "$ROOT/.local/go/bin/go" ]]; then  # fetched by scripts/setup.sh
        export PATH="$PATH:$ROOT/.local/go/bin"
    else
        die "go not found: install Go 1.22+ (1.24+ avoids a toolchain download; https://go.dev/dl/, e.g. into /usr/local/go) and put it on PATH, then rerun $0"
    fi
fi

# FerretDB v1.24.x needs Go 1.24+; with an older go and the default
# GOTOOLCHAIN=auto, the go command fetches a newer toolchain from the module proxy.
export GOFLAGS="${GOFLAGS:-} -mod=mod"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferretdb-build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

log "building FerretDB $VERSION with $(go version | awk '{print $3}') in $WORK"
start=$SECONDS
cd "$WORK"
go mod init fdbbuild >/dev/null 2>&1
go get "$MODULE/cmd/ferretdb@$VERSION"

# Module cache paths escape capitals as !lowercase.
escaped="$(printf '%s' "$MODULE" | sed -E 's/([A-Z])/!\L\1/g')"
modsrc="$(go env GOMODCACHE)/$escaped@$VERSION"
[[ -d "$modsrc" ]] || die "module source not found at $modsrc after go get"

cp -R "$modsrc" src
chmod -R u+w src
echo "$VERSION" > src/build/version/version.txt
for patch in "${PATCHES[@]}"; do
    log "applying ${patch#"$ROOT"/}"
    patch --quiet --forward -p1 -d src <"$patch" || die "$patch does not apply to FerretDB $VERSION"
done
go mod edit -replace "$MODULE=./src"
mkdir -p "$(dirname "$OUT")"
go build -trimpath -o "$OUT.tmp" "$MODULE/cmd/ferretdb"

"$OUT.tmp" --version >/dev/null || die "built binary does not run: $OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
echo "$BUILD" >"$OUT.build"
log "installed $OUT ($("$OUT" --version | awk '/^version:/ {print $2}')) in $((SECONDS - start))s"
