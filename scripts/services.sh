#!/usr/bin/env bash
# Local infrastructure for development and tests: RabbitMQ and FerretDB
# (MongoDB wire protocol on SQLite).
#
#   scripts/services.sh up      start whatever does not already answer
#   scripts/services.sh down    stop what `up` started (nothing else)
#   scripts/services.sh status  show what answers
#   scripts/services.sh answers amqp|mongodb
#                               exit 0 when RABBITMQ_URL / MONGODB_URL answers its protocol
#
# Environment:
#   RABBITMQ_URL      default amqp://guest:guest@127.0.0.1:5672/
#   MONGODB_URL       default mongodb://127.0.0.1:27017/
#   SERVICES_TIMEOUT  seconds to wait for each service to answer (default 120)
#   FERRETDB_BIN      ferretdb binary (default: .local/bin/ferretdb, then PATH)
#
# If something already answers at a URL's host:port it is left alone. Anything
# started here keeps its data and logs under the git-ignored .local/ folder and
# is recorded under .local/run/, which is what `down` stops.
#
# RabbitMQ on port 5672 runs as the default node (rabbit@<short hostname>), so
# plain `rabbitmqctl add_vhost X` reaches it. On any other port the node is
# called sidebar-<port>@localhost; export RABBITMQ_NODENAME=sidebar-<port>@localhost
# (or pass `-n`) for rabbitmqctl to reach it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
RUN_DIR="$LOCAL/run"
LOG_DIR="$LOCAL/logs"

RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}"
MONGODB_URL="${MONGODB_URL:-mongodb://127.0.0.1:27017/}"
TIMEOUT="${SERVICES_TIMEOUT:-120}"

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: warning: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# --- helpers -----------------------------------------------------------------

# parse_url URL DEFAULT_PORT -> sets URL_HOST and URL_PORT.
# Handles user:pass@, [ipv6]:port, paths/queries and MongoDB seed lists (the
# first host is used).
parse_url() {
    local url="$1" default_port="$2" rest hostport
    rest="${url#*://}"
    rest="${rest%%[/?]*}"
    hostport="${rest##*@}"
    hostport="${hostport%%,*}"
    if [[ "$hostport" == \[* ]]; then
        URL_HOST="${hostport%%]*}"
        URL_HOST="${URL_HOST#[}"
        rest="${hostport#*]}"
        URL_PORT="${rest#:}"
    elif [[ "$hostport" == *:* ]]; then
        URL_HOST="${hostport%%:*}"
        URL_PORT="${hostport#*:}"
    else
        URL_HOST="$hostport"
        URL_PORT=""
    fi
    URL_HOST="${URL_HOST:-127.0.0.1}"
    URL_PORT="${URL_PORT:-$default_port}"
    [[ "$URL_PORT" =~ ^[0-9]+$ ]] || die "cannot parse a port out of $url"
}

is_local_host() {
    case "$1" in
        127.* | localhost | ::1 | 0.0.0.0 | "$(hostname)" | "$(hostname -s 2>/dev/null || true)") return 0 ;;
        *) return 1 ;;
    esac
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# probe KIND HOST PORT: speak the protocol (KIND is amqp or mongodb). Falls
# back to a plain TCP check when python3 is not available.
probe() {
    if ! command -v python3 >/dev/null 2>&1; then
        port_open "$2" "$3"
        return
    fi
    python3 - "$@" <<'PY' 2>/dev/null
import socket, struct, sys

kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf

with socket.create_connection((host, port), timeout=5) as sock:
    sock.settimeout(5)
    if kind == "amqp":
        # Protocol header; a broker answers with a connection.start method frame.
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        frame_type, _channel, _size = struct.unpack(">BHI", recv_exact(sock, 7))
        class_id, method_id = struct.unpack(">HH", recv_exact(sock, 4))
        sys.exit(0 if (frame_type, class_id, method_id) == (1, 10, 10) else 1)
    else:
        # OP_MSG {ping: 1, $db: "admin"}; expect an OP_MSG reply with ok: 1.
        def cstr(s):
            return s.encode() + b"\x00"
        body = (b"\x10" + cstr("ping") + struct.pack("<i", 1)
                + b"\x02" + cstr("$db") + struct.pack("<i", 6) + cstr("admin"))
        doc = struct.pack("<i", len(body) + 5) + body + b"\x00"
        msg = struct.pack("<I", 0) + b"\x00" + doc
        sock.sendall(struct.pack("<iiii", 16 + len(msg), 1, 0, 2013) + msg)
        length, _req, _resp, opcode = struct.unpack("<iiii", recv_exact(sock, 16))
        reply = recv_exact(sock, length - 16)
        ok = b"\x01ok\x00" + struct.pack("<d", 1.0)
        sys.exit(0 if opcode == 2013 and ok in reply else 1)
PY
}

# tail_logs FILE...: print the end of each existing log, for error reports.
tail_logs() {
    local f
    for f in "$@"; do
        [[ -s "$f" ]] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

# pid_is PID PATTERN: PID is alive and its command line matches PATTERN
# (guards against pid reuse before signalling anything).
pid_is() {
    local pid="$1" pattern="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

wait_pid_gone() {
    local pid="$1" secs="$2" i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# --- RabbitMQ ----------------------------------------------------------------

# Sets RMQ_SERVER and RMQ_CTL. On Debian the /usr/sbin wrappers run the node as
# the `rabbitmq` user, which is what we want as root (same Erlang cookie as
# plain `rabbitmqctl`); other users have to call the real scripts directly.
find_rabbitmq() {
    RMQ_SERVER="" RMQ_CTL=""
    local dir
    if [[ "$(id -u)" != 0 && -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
        RMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
        RMQ_CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
        return 0
    fi
    RMQ_SERVER="$(command -v rabbitmq-server || true)"
    RMQ_CTL="$(command -v rabbitmqctl || true)"
    for dir in /usr/sbin /usr/local/sbin /usr/lib/rabbitmq/bin; do
        [[ -n "$RMQ_SERVER" || ! -x "$dir/rabbitmq-server" ]] || RMQ_SERVER="$dir/rabbitmq-server"
        [[ -n "$RMQ_CTL" || ! -x "$dir/rabbitmqctl" ]] || RMQ_CTL="$dir/rabbitmqctl"
    done
    [[ -n "$RMQ_SERVER" && -n "$RMQ_CTL" ]]
}

rabbitmq_marker() { echo "$RUN_DIR/rabbitmq-$1.env"; }

# rabbitmq_node_pid MARKER: pid of the node a marker describes, if alive.
rabbitmq_node_pid() {
    local pidfile pid
    pidfile="$(sed -n 's/^PIDFILE=//p' "$1")"
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    pid_is "$pid" beam || return 1
    echo "$pid"
}

rabbitmq_up() {
    parse_url "$RABBITMQ_URL" 5672
    local host="$URL_HOST" port="$URL_PORT" marker
    marker="$(rabbitmq_marker "$port")"

    if probe amqp "$host" "$port"; then
        if [[ -f "$marker" ]] && rabbitmq_node_pid "$marker" >/dev/null; then
            say "RabbitMQ: already running at $host:$port (started by services.sh, node $(sed -n 's/^NODE=//p' "$marker"))"
        else
            say "RabbitMQ: something already answers AMQP at $host:$port; leaving it alone"
        fi
        return 0
    fi
    if port_open "$host" "$port"; then
        die "RabbitMQ: $host:$port accepts connections but does not answer an AMQP 0-9-1 handshake (port taken by something else, or a broker still booting); free the port or point RABBITMQ_URL elsewhere"
    fi
    is_local_host "$host" || die "RabbitMQ: nothing answers at $host:$port and it is not a local address, so it cannot be started here (RABBITMQ_URL=$RABBITMQ_URL)"
    find_rabbitmq || die "RabbitMQ: rabbitmq-server/rabbitmqctl not found; install them with: apt-get update && apt-get install -y rabbitmq-server"

    # Port 5672: the default node name (or RABBITMQ_NODENAME if exported), so
    # plain `rabbitmqctl` reaches it. Other ports: a distinct node per port.
    local base="$LOCAL/rabbitmq" node="${RABBITMQ_NODENAME:-}" startup_log="$LOG_DIR/rabbitmq-$port.startup.log"
    local pidfile="$base/rabbitmq-$port.pid"
    local -a ctl_node=()
    [[ "$port" == 5672 ]] || node="sidebar-$port@localhost"
    [[ -z "$node" ]] || ctl_node=(-n "$node")
    if [[ -z "$node" ]] && ! getent hosts "$(hostname -s)" >/dev/null 2>&1; then
        warn "the short hostname '$(hostname -s)' does not resolve (add it to /etc/hosts); the default node rabbit@$(hostname -s) may not start"
    fi
    mkdir -p "$base/mnesia" "$base/log" "$RUN_DIR" "$LOG_DIR"
    rm -f "$marker"
    # The Debian wrapper drops root to the rabbitmq user, which must own the
    # data. If the checkout is somewhere that user cannot reach (e.g. under
    # /root, mode 0700), keep the node's data under /var/lib/rabbitmq instead.
    if [[ "$(id -u)" == 0 ]] && id rabbitmq >/dev/null 2>&1; then
        chown -R rabbitmq: "$base"
        if ! runuser -u rabbitmq -- test -w "$base/mnesia" 2>/dev/null; then
            local fallback
            fallback="$(getent passwd rabbitmq | cut -d: -f6)"
            fallback="${fallback:-/var/lib/rabbitmq}/sidebar-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)"
            warn "the rabbitmq user cannot write to $base (is a parent directory mode 0700?); using $fallback instead"
            base="$fallback"
            pidfile="$base/rabbitmq-$port.pid"
            mkdir -p "$base/mnesia" "$base/log"
            chown -R rabbitmq: "$base"
        fi
    fi
    rm -f "$pidfile"

    say "RabbitMQ: starting node ${node:-rabbit@$(hostname -s)} on $host:$port (data in ${base#"$ROOT"/})"
    (
        export RABBITMQ_MNESIA_BASE="$base/mnesia"
        export RABBITMQ_LOG_BASE="$base/log"
        export RABBITMQ_PID_FILE="$pidfile"
        export RABBITMQ_NODE_PORT="$port"
        export RABBITMQ_DIST_PORT="$((port + 20000))"
        [[ "$host" != 127.* ]] || export RABBITMQ_NODE_IP_ADDRESS="$host"
        [[ -z "$node" ]] || export RABBITMQ_NODENAME="$node"
        exec "$RMQ_SERVER" -detached
    ) </dev/null >"$startup_log" 2>&1 9>&- || {
        tail_logs "$startup_log"
        die "RabbitMQ: rabbitmq-server -detached failed"
    }
    {
        echo "NODE=${node}"
        echo "PORT=$port"
        echo "PIDFILE=$pidfile"
    } >"$marker"

    local deadline=$((SECONDS + TIMEOUT)) seen_pid=""
    local -a logs=("$startup_log" "$base/log/${node:-rabbit@$(hostname -s)}.log")
    until probe amqp "$host" "$port"; do
        if [[ -z "$seen_pid" && -s "$pidfile" ]]; then
            seen_pid="$(cat "$pidfile")"
        fi
        if [[ -n "$seen_pid" ]] && ! kill -0 "$seen_pid" 2>/dev/null; then
            rm -f "$marker"
            tail_logs "${logs[@]}"
            die "RabbitMQ: the node exited during start-up (logs above, in ${base#"$ROOT"/}/log)"
        fi
        if ((SECONDS >= deadline)); then
            tail_logs "${logs[@]}"
            die "RabbitMQ: no AMQP answer at $host:$port after ${TIMEOUT}s (it may still be booting; \`scripts/services.sh down\` stops it)"
        fi
        sleep 1
    done
    # The listener opens late in boot, but wait for the whole boot to finish
    # (quorum queues need the node fully started).
    local left=$((deadline - SECONDS))
    ((left > 5)) || left=5
    if ! "$RMQ_CTL" "${ctl_node[@]}" await_startup --timeout "$left" >/dev/null 2>&1; then
        tail_logs "${logs[@]}"
        die "RabbitMQ: \`rabbitmqctl ${ctl_node[*]} await_startup\` failed"
    fi
    say "RabbitMQ: ready at $host:$port (node ${node:-rabbit@$(hostname -s)}, pid $(cat "$pidfile" 2>/dev/null || echo '?'))"
}

rabbitmq_down_marker() {
    local marker="$1" node port pidfile pid
    node="$(sed -n 's/^NODE=//p' "$marker")"
    port="$(sed -n 's/^PORT=//p' "$marker")"
    pidfile="$(sed -n 's/^PIDFILE=//p' "$marker")"
    if ! pid="$(rabbitmq_node_pid "$marker")"; then
        say "RabbitMQ: node on port $port is not running (removing stale record)"
        rm -f "$marker"
        return 0
    fi
    local -a ctl_node=()
    [[ -z "$node" ]] || ctl_node=(-n "$node")
    say "RabbitMQ: stopping node ${node:-rabbit@$(hostname -s)} on port $port (pid $pid)"
    find_rabbitmq || true
    if [[ -z "${RMQ_CTL:-}" ]] || ! timeout 90 env -u RABBITMQ_NODENAME "$RMQ_CTL" "${ctl_node[@]}" stop "$pidfile" >/dev/null 2>&1; then
        warn "rabbitmqctl stop failed; sending SIGTERM to pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait_pid_gone "$pid" 10 || die "RabbitMQ: pid $pid is still running"
    rm -f "$marker" "$pidfile"
    say "RabbitMQ: stopped"
}

# --- FerretDB ----------------------------------------------------------------

find_ferretdb() {
    if [[ -n "${FERRETDB_BIN:-}" ]]; then
        [[ -x "$FERRETDB_BIN" ]] && echo "$FERRETDB_BIN"
        return
    fi
    if [[ -x "$LOCAL/bin/ferretdb" ]]; then
        echo "$LOCAL/bin/ferretdb"
    else
        command -v ferretdb
    fi
}

ferretdb_pidfile() { echo "$RUN_DIR/ferretdb-$1.pid"; }

ferretdb_up() {
    parse_url "$MONGODB_URL" 27017
    local host="$URL_HOST" port="$URL_PORT" pidfile pid
    pidfile="$(ferretdb_pidfile "$port")"

    if probe mongodb "$host" "$port"; then
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if pid_is "$pid" ferretdb; then
            say "FerretDB: already running at $host:$port (started by services.sh, pid $pid)"
        else
            say "FerretDB: something already answers the MongoDB protocol at $host:$port; leaving it alone"
        fi
        return 0
    fi
    if port_open "$host" "$port"; then
        die "FerretDB: $host:$port accepts connections but does not answer a MongoDB ping (port taken by something else?); free the port or point MONGODB_URL elsewhere"
    fi
    is_local_host "$host" || die "FerretDB: nothing answers at $host:$port and it is not a local address, so it cannot be started here (MONGODB_URL=$MONGODB_URL)"
    local bin
    bin="$(find_ferretdb)" || die "FerretDB: ferretdb binary not found (looked for ${FERRETDB_BIN:-.local/bin/ferretdb, then PATH}); build it with: scripts/install-ferretdb.sh (needs Go 1.22+; or \`make services\`, which builds it when go is installed)"

    local suffix="" listen_host="$host"
    [[ "$port" == 27017 ]] || suffix="-$port"
    [[ "$listen_host" != localhost ]] || listen_host=127.0.0.1
    [[ "$listen_host" != *:* ]] || listen_host="[$listen_host]"
    local data="$LOCAL/ferretdb/data$suffix" state="$LOCAL/ferretdb/state$suffix" log="$LOG_DIR/ferretdb$suffix.log"
    mkdir -p "$data" "$state" "$RUN_DIR" "$LOG_DIR"

    say "FerretDB: starting $bin on $listen_host:$port (data in ${data#"$ROOT"/})"
    printf '\n=== %s: services.sh starting ferretdb on %s:%s ===\n' "$(date -Is)" "$listen_host" "$port" >>"$log"
    # synchronous(normal): SQLite's advice for WAL mode (FerretDB's default journal). A commit
    # no longer waits for an fsync of the log, only checkpoints do; an application crash
    # loses nothing, a power cut may roll back the last commits. Under load the fsync per
    # commit, taken while holding SQLite's one write lock, made writes queue for seconds.
    # This is the local stand-in; production runs MongoDB.
    # setsid: own session, so Ctrl-C in the calling terminal/make does not kill it.
    setsid "$bin" \
        --handler=sqlite \
        --sqlite-url="file:$data/?_pragma=synchronous(normal)" \
        --listen-addr="$listen_host:$port" \
        --state-dir="$state" \
        --telemetry=disable \
        --debug-addr=- \
        </dev/null >>"$log" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$pidfile"

    local deadline=$((SECONDS + TIMEOUT))
    until probe mongodb "$host" "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            tail_logs "$log"
            die "FerretDB: ferretdb exited during start-up (log above: ${log#"$ROOT"/})"
        fi
        if ((SECONDS >= deadline)); then
            tail_logs "$log"
            die "FerretDB: nothing answers at $host:$port after ${TIMEOUT}s (\`scripts/services.sh down\` stops it)"
        fi
        sleep 0.2
    done
    say "FerretDB: ready at $host:$port (pid $pid, log ${log#"$ROOT"/})"
}

ferretdb_down_pidfile() {
    local pidfile="$1" pid port
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    port="$(basename "$pidfile" .pid)"
    port="${port#ferretdb-}"
    if ! pid_is "$pid" ferretdb; then
        say "FerretDB on port $port is not running (removing stale record)"
        rm -f "$pidfile"
        return 0
    fi
    say "FerretDB: stopping pid $pid (port $port)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_gone "$pid" 15; then
        warn "FerretDB: pid $pid ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 5 || die "FerretDB: pid $pid is still running"
    fi
    rm -f "$pidfile"
    say "FerretDB: stopped"
}

# --- commands ----------------------------------------------------------------

# Serialise concurrent up/down runs. Started servers must not inherit fd 9
# (they would hold the lock for their lifetime): every launch closes it.

with_lock() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/services.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w "$((TIMEOUT * 2 + 60))" 9 || die "another services.sh is holding $RUN_DIR/services.lock"
    fi
}

cmd_up() {
    with_lock
    rabbitmq_up
    ferretdb_up
}

# Stops everything recorded under .local/run, whatever the current URLs say.
cmd_down() {
    with_lock
    local f found=0
    shopt -s nullglob
    for f in "$RUN_DIR"/rabbitmq-*.env; do
        found=1
        rabbitmq_down_marker "$f"
    done
    for f in "$RUN_DIR"/ferretdb-*.pid; do
        found=1
        ferretdb_down_pidfile "$f"
    done
    shopt -u nullglob
    ((found)) || say "nothing was started by services.sh; nothing to stop"
}

status_line() {
    local name="$1" kind="$2" url="$3" default_port="$4" managed="$5"
    parse_url "$url" "$default_port"
    local state
    if probe "$kind" "$URL_HOST" "$URL_PORT"; then
        state="answers"
    elif port_open "$URL_HOST" "$URL_PORT"; then
        state="port open, but no $kind answer"
        STATUS_RC=1
    else
        state="NOT answering"
        STATUS_RC=1
    fi
    printf '%-9s %-22s %-32s %s\n' "$name" "$URL_HOST:$URL_PORT" "$state" "$managed"
}

cmd_status() {
    STATUS_RC=0
    local managed pid
    parse_url "$RABBITMQ_URL" 5672
    managed="(not started by services.sh)"
    if [[ -f "$(rabbitmq_marker "$URL_PORT")" ]] && pid="$(rabbitmq_node_pid "$(rabbitmq_marker "$URL_PORT")")"; then
        managed="(started by services.sh, pid $pid)"
    fi
    status_line RabbitMQ amqp "$RABBITMQ_URL" 5672 "$managed"

    parse_url "$MONGODB_URL" 27017
    managed="(not started by services.sh)"
    pid="$(cat "$(ferretdb_pidfile "$URL_PORT")" 2>/dev/null || true)"
    if pid_is "$pid" ferretdb; then
        managed="(started by services.sh, pid $pid)"
    fi
    status_line FerretDB mongodb "$MONGODB_URL" 27017 "$managed"
    return "$STATUS_RC"
}

# answers KIND: the URL of that kind answers its protocol (scripts/setup.sh asks).
cmd_answers() {
    case "${1:-}" in
        amqp) parse_url "$RABBITMQ_URL" 5672 ;;
        mongodb) parse_url "$MONGODB_URL" 27017 ;;
        *) die "usage: $0 answers amqp|mongodb" ;;
    esac
    probe "$1" "$URL_HOST" "$URL_PORT"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    answers) cmd_answers "${2:-}" ;;
    *)
        echo "usage: $0 up|down|status|answers amqp|mongodb" >&2
        exit 2
        ;;
esac
