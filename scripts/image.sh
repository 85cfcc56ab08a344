#!/usr/bin/env bash
# Builds the image from Containerfile with whichever builder works here.
#
#   scripts/image.sh build IMAGE     e.g. ghcr.io/sidebar-widgets/sidebar:0.1.0
#   scripts/image.sh builder         print the builder that would be used, or fail
#
# Tried in order: podman, docker (only when its daemon answers: `docker info`), buildah.
# BUILDER=podman|docker|buildah forces one; BUILD_ARGS adds arguments (e.g.
# "--build-arg BASE=localhost/debian:bookworm-slim" where no registry can be reached).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
    printf 'image: error: %s\n' "$*" >&2
    exit 1
}

find_builder() {
    if [[ -n "${BUILDER:-}" ]]; then
        echo "$BUILDER"
    elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
        echo podman
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    elif command -v buildah >/dev/null 2>&1; then
        echo buildah
    else
        die "no working container builder: no podman, no buildah, and no Docker engine answering \`docker info\`. Install one (as root: apt-get install -y podman) or start a Docker engine"
    fi
}

case "${1:-}" in
    builder) find_builder ;;
    build)
        (($# == 2)) || die "usage: $0 build IMAGE"
        builder="$(find_builder)"
        # shellcheck disable=SC2086 # BUILD_ARGS is a list of arguments
        set -- "$builder" build ${BUILD_ARGS:-} -f "$ROOT/Containerfile" -t "$2" "$ROOT"
        printf 'image: %s\n' "$*"
        "$@"
        ;;
    *) die "usage: $0 build IMAGE | builder" ;;
esac
