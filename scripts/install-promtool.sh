#!/usr/bin/env bash
# Install promtool as .local/bin/promtool (git-ignored), for `promtool check rules`
# and `promtool test rules` on deploy/k8s/base/prometheus-rule.yaml
# (tests/unit/test_alert_rules.py).
#
# It comes from Debian's `prometheus` package, unpacked with `apt-get download` and
# `dpkg -x`: nothing is installed system-wide and no Prometheus server is started.
# Needs apt's package lists (run `apt-get update` first on a fresh machine); no root.
#
# Environment:
#   PROMTOOL_BIN  where to install (default <repo>/.local/bin/promtool)
#   FORCE=1       unpack again even if a working promtool is installed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PROMTOOL_BIN:-$ROOT/.local/bin/promtool}"

log() { printf 'install-promtool: %s\n' "$*"; }
die() { printf 'install-promtool: error: %s\n' "$*" >&2; exit 1; }

if [[ "${FORCE:-0}" != 1 ]] && "$OUT" --version >/dev/null 2>&1; then
    log "$OUT is already installed ($("$OUT" --version 2>&1 | head -n 1)); nothing to do"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: promtool is taken from Debian's prometheus package"
command -v dpkg >/dev/null 2>&1 || die "dpkg not found"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/promtool.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

start=$SECONDS
log "downloading Debian's prometheus package"
# apt-get download writes into the current directory. As root it would do so as the _apt user,
# who cannot write into this private temporary directory: download as root instead.
apt_options=()
if [[ $EUID -eq 0 ]]; then
    apt_options=(-o APT::Sandbox::User=root)
fi
(cd "$WORK" && apt-get download -q "${apt_options[@]}" prometheus) \
    || die "apt-get download prometheus failed; on a fresh machine run \`apt-get update\` first"
deb="$(find "$WORK" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)"
[[ -n "$deb" ]] || die "apt-get download left no prometheus_*.deb in $WORK"

dpkg -x "$deb" "$WORK/root"
[[ -x "$WORK/root/usr/bin/promtool" ]] || die "$(basename "$deb") has no usr/bin/promtool"
mkdir -p "$(dirname "$OUT")"
install -m 0755 "$WORK/root/usr/bin/promtool" "$OUT"
log "installed $OUT ($("$OUT" --version 2>&1 | head -n 1)) from $(basename "$deb") in $((SECONDS - start))s"
