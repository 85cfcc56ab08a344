#!/usr/bin/env bash
# Builds the image from Containerfile with whichever builder works here.
#
#   scripts/image.sh build IMAGE     e.g. ghcr.io/sidebar-widgets/sidebar:0.1.0
#   scripts/image.sh smoke IMAGE     run each service from IMAGE as deploy/k8s does (read-only root,
#                                    uid 10001 or 10002, no capabilities, no_new_privs) against the
#                                    local RabbitMQ and FerretDB, in a vhost and database of its own;
#                                    check it answers, stop it with SIGTERM and expect exit 0
#   scripts/image.sh builder         print the builder that would be used, or fail
#
# Tried in order: podman, docker (only when its daemon answers: `docker info`), buildah.
# BUILDER=podman|docker|buildah forces one; BUILD_ARGS adds arguments (e.g.
# "--build-arg BASE=localhost/debian:bookworm-slim" where no registry can be reached);
# RUN_ARGS adds arguments to `run` in smoke (e.g. "--runtime runc").
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

# smoke IMAGE: needs podman or docker, rabbitmqctl, and curl.
smoke() {
    local image="$1" engine run_id vhost database name rc=0
    engine="$(find_builder)"
    [[ "$engine" != buildah ]] || die "smoke needs podman or docker to run containers"
    run_id="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    vhost="sidebar-image-$run_id" database="sidebar_image_$run_id"
    rabbitmqctl add_vhost "$vhost" >/dev/null
    rabbitmqctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
    # shellcheck disable=SC2206 # RUN_ARGS is a list of arguments
    local -a common=(run -d --network host --read-only --cap-drop=ALL --security-opt no-new-privileges ${RUN_ARGS:-}
        -e "RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/$vhost" -e MONGODB_URL=mongodb://127.0.0.1:27017/
        -e "MONGODB_DATABASE=$database" -e "SECRETS_KEY=$(head -c 32 /dev/urandom | base64)" -e METRICS_HOST=127.0.0.1)
    declare -A started=() urls=(
        [store]="http://127.0.0.1:18731/healthz http://127.0.0.1:18731/console"
        [orchestrator]=http://127.0.0.1:18732/metrics
        [executor]=http://127.0.0.1:18733/metrics
    )
    started[store]="$("$engine" "${common[@]}" --user 10001 -e STORE_ADMIN_KEY=image-smoke-admin-key-0123 \
        -e STORE_HOST=127.0.0.1 -e STORE_PORT=18731 "$image" python -m store)"
    started[orchestrator]="$("$engine" "${common[@]}" --user 10001 -e ORCHESTRATOR_METRICS_PORT=18732 \
        "$image" python -m orchestrator)"
    started[executor]="$("$engine" "${common[@]}" --user 10002 -e EXECUTOR_METRICS_PORT=18733 \
        -e EXECUTOR_CONCURRENCY=2 "$image" python -m executor)"
    for name in store orchestrator executor; do
        local url answered
        for url in ${urls[$name]}; do
            answered=0
            for _ in $(seq 120); do
                curl -fsS -o /dev/null "$url" 2>/dev/null && answered=1 && break
                sleep 0.5
            done
            if ((answered)); then printf 'image: %s answers %s\n' "$name" "$url"; else printf 'image: %s does not answer %s\n' "$name" "$url"; rc=1; fi
        done
    done
    for name in store orchestrator executor; do
        "$engine" stop -t 40 "${started[$name]}" >/dev/null
        local code
        code="$("$engine" inspect -f '{{.State.ExitCode}}' "${started[$name]}")"
        printf 'image: %s stopped, exit %s\n' "$name" "$code"
        if [[ "$code" != 0 ]]; then
            "$engine" logs "${started[$name]}" 2>&1 | tail -20
            rc=1
        fi
        "$engine" rm "${started[$name]}" >/dev/null
    done
    rabbitmqctl delete_vhost "$vhost" >/dev/null
    # shellcheck disable=SC2086 # RUN_ARGS is a list of arguments
    "$engine" run --rm --network host ${RUN_ARGS:-} "$image" python -c \
        "import pymongo, sys; pymongo.MongoClient('mongodb://127.0.0.1:27017/').drop_database(sys.argv[1])" "$database"
    return "$rc"
}

case "${1:-}" in
    builder) find_builder ;;
    smoke)
        (($# == 2)) || die "usage: $0 smoke IMAGE"
        smoke "$2"
        ;;
    build)
        (($# == 2)) || die "usage: $0 build IMAGE"
        builder="$(find_builder)"
        # shellcheck disable=SC2086 # BUILD_ARGS is a list of arguments
        set -- "$builder" build ${BUILD_ARGS:-} -f "$ROOT/Containerfile" -t "$2" "$ROOT"
        printf 'image: %s\n' "$*"
        "$@"
        ;;
    *) die "usage: $0 build IMAGE | smoke IMAGE | builder" ;;
esac
