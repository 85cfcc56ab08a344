#!/usr/bin/env bash
# Run the whole platform locally with the demo business: what `make run` executes
# once the venv exists and RabbitMQ/FerretDB answer (`make install services`).
#
# Starts the mock example API, the store, the orchestrator and an executor in
# the background (JSON-line logs in .local/logs/<name>.log), waits for them,
# seeds the demo business, prints how to try it, then stays in the foreground
# until Ctrl-C or SIGTERM and stops exactly the processes it started.
#
# Environment (defaults in brackets):
#   STORE_ADMIN_KEY            [dev-admin-key-change-me]
#   STORE_PORT                 [8000]
#   ORCHESTRATOR_METRICS_PORT  [9101]
#   EXECUTOR_METRICS_PORT      [9102]
#   MOCK_API_PORT              [8900]
#   RABBITMQ_URL               [amqp://guest:guest@127.0.0.1:5672/]
#   MONGODB_URL                [mongodb://127.0.0.1:27017/]
#   MONGODB_DATABASE           [sidebar]
#   SECRETS_KEY                [a fresh random key per run] seals widget secrets (base64 of 32 bytes);
#                              set your own to keep secrets working across runs
#   RUN_TIMEOUT                [60] seconds to wait for each process to answer
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
LOG_DIR="$ROOT/.local/logs"

export STORE_ADMIN_KEY="${STORE_ADMIN_KEY:-dev-admin-key-change-me}"
export STORE_HOST="${STORE_HOST:-127.0.0.1}"
export STORE_PORT="${STORE_PORT:-8000}"
export ORCHESTRATOR_METRICS_PORT="${ORCHESTRATOR_METRICS_PORT:-9101}"
export EXECUTOR_METRICS_PORT="${EXECUTOR_METRICS_PORT:-9102}"
export RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}"
export MONGODB_URL="${MONGODB_URL:-mongodb://127.0.0.1:27017/}"
export MONGODB_DATABASE="${MONGODB_DATABASE:-sidebar}"
# Development only: secrets sealed in an earlier run don't open with this run's key; set them again.
export SECRETS_KEY="${SECRETS_KEY:-$(head -c 32 /dev/urandom | base64)}"
MOCK_API_PORT="${MOCK_API_PORT:-8900}"
TIMEOUT="${RUN_TIMEOUT:-60}"

STORE_URL="http://127.0.0.1:$STORE_PORT"
MOCK_API_URL="http://127.0.0.1:$MOCK_API_PORT"
# The sandbox blocks private and loopback addresses; the demo's mock API is the one exception.
export EXECUTOR_EGRESS_ALLOW="${EXECUTOR_EGRESS_ALLOW:-127.0.0.1:$MOCK_API_PORT}"

NAMES=()
PIDS=()

say() { printf 'run: %s\n' "$*"; }
die() { printf 'run: error: %s\n' "$*" >&2; exit 1; }

tail_log() {
    local log="$LOG_DIR/$1.log"
    [[ -s "$log" ]] || return 0
    printf -- '----- last lines of %s -----\n' "${log#"$ROOT"/}" >&2
    tail -n 30 "$log" >&2
}

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    ! timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# http_ok URL: a GET answers 2xx.
http_ok() {
    "$PY" - "$1" <<'PY' 2>/dev/null
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if 200 <= response.status < 300 else 1)
PY
}

# start NAME CMD...: run CMD in the background, logging to .local/logs/NAME.log.
start() {
    local name="$1"
    shift
    "$@" </dev/null >"$LOG_DIR/$name.log" 2>&1 &
    NAMES+=("$name")
    PIDS+=("$!")
    say "started $name (pid $!, log .local/logs/$name.log)"
}

# wait_http NAME URL: until URL answers; fail early if NAME's process exits.
wait_http() {
    local name="$1" url="$2" deadline=$((SECONDS + TIMEOUT)) i pid=""
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" != "$name" ]] || pid="${PIDS[$i]}"
    done
    until http_ok "$url"; do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            tail_log "$name"
            die "$name exited during start-up (log above: .local/logs/$name.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$name"
            die "$name did not answer at $url within ${TIMEOUT}s (log above: .local/logs/$name.log)"
        fi
        sleep 0.3
    done
    say "$name answers at $url"
}

# Stops only what this script started: SIGTERM (services drain), then SIGKILL.
stop_all() {
    local i pid name deadline
    trap - INT TERM
    ((${#PIDS[@]})) || return 0
    say "stopping ${NAMES[*]}"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 40))
    for i in "${!PIDS[@]}"; do
        pid="${PIDS[$i]}" name="${NAMES[$i]}"
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    say "stopped"
}

# Foreground: until a signal arrives, or until one process dies (then show why).
watch_processes() {
    local i
    while true; do
        for i in "${!PIDS[@]}"; do
            if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
                tail_log "${NAMES[$i]}"
                die "${NAMES[$i]} (pid ${PIDS[$i]}) exited; stopping the rest"
            fi
        done
        sleep 1 &
        wait $! || true
    done
}

print_usage() {
    local key="$1" base="$STORE_URL/v1/businesses/demo"
    cat <<EOF

The platform is running with the demo business "Demo Outfitters" (business id: demo).

  Business API key:  $key

Open a conversation (Jane Cooper, a known customer; also try conv-1002, conv-1003, conv-1004):
  curl -X POST -H "Authorization: Bearer $key" $base/conversations/conv-1001/open

Read its sidebar (ready within a second or so):
  curl -H "Authorization: Bearer $key" $base/conversations/conv-1001/sidebar

Run one widget on demand (Run Test):
  curl -X POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" \\
       -d '{"public_id": "1001"}' $base/widgets/crm/test

OpenAPI (Swagger UI):  $STORE_URL/docs
Metrics:               store $STORE_URL/metrics
                       orchestrator http://127.0.0.1:$ORCHESTRATOR_METRICS_PORT/metrics
                       executor http://127.0.0.1:$EXECUTOR_METRICS_PORT/metrics
Mock example API:      $MOCK_API_URL (e.g. $MOCK_API_URL/subscriptions?email=jane@example.com)
Logs (JSON lines):     .local/logs/{mock-api,store,orchestrator,executor}.log

Press Ctrl-C to stop.
EOF
}

main() {
    [[ -x "$PY" ]] || die "$PY not found; run \`make install\` first"
    mkdir -p "$LOG_DIR"
    local port
    for port in "$MOCK_API_PORT" "$STORE_PORT" "$ORCHESTRATOR_METRICS_PORT" "$EXECUTOR_METRICS_PORT"; do
        port_free "$port" || die "port $port on 127.0.0.1 is already in use (another \`make run\`?); stop it or choose other ports"
    done

    trap stop_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    start mock-api "$PY" demo/mock_api.py --port "$MOCK_API_PORT"
    start store "$PY" -m store
    start orchestrator "$PY" -m orchestrator
    start executor "$PY" -m executor

    wait_http mock-api "$MOCK_API_URL/healthz"
    wait_http store "$STORE_URL/healthz"
    wait_http orchestrator "http://127.0.0.1:$ORCHESTRATOR_METRICS_PORT/metrics"
    wait_http executor "http://127.0.0.1:$EXECUTOR_METRICS_PORT/metrics"

    say "seeding the demo business"
    local output key
    output="$("$PY" demo/seed.py --store "$STORE_URL" --admin-key "$STORE_ADMIN_KEY" --api-base "$MOCK_API_URL")" ||
        die "seeding failed (message above; store log: .local/logs/store.log)"
    sed '$d' <<<"$output" | sed 's/^/  /'
    key="$("$PY" -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["api_key"])' <<<"$output")"

    print_usage "$key"
    watch_processes
}

main "$@"
