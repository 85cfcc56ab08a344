"""Executor benchmark: per-job overhead of the ways to run a widget, on one machine, in one run.

(a) ``fresh``: a fresh ``python -I`` process per job (SubprocessRunner, the issue-2 path), which
    imports the same runtime the zygote pre-imports (``json``, ``requests``, ``httpx``);
(b) ``zygote``: the executor's sandboxed fork path (ZygoteRunner: seccomp, Landlock, uid per slot...)
    with one job per child (jobs name no widget: as ``EXECUTOR_WARM_WORKERS=false``);
(b') ``warm``: the same sandbox with warm workers: jobs name their business and widget, so a
    child that ran one takes the next (reuse on);
(c) ``inproc``: ``exec`` in this process with no isolation: the floor.

CPU per job: the CPU time of the benchmark's main thread (the executor's event loop, or the
in-process widget) plus that of the zygote and every process it forked (live ones from
``/proc``, ended ones from the zygote's children times), or for (a) of the children this
process waited for, over the sequential jobs, divided by their number. The local servers'
threads are not counted.

Workloads: a no-op widget; one HTTP GET to a local server; the same over HTTPS to a
local TLS server whose throwaway CA is trusted the way each path allows: (b) through
the zygote's one shared TLS context (``extra_ca_file``), (a) and (c) with
``verify=<ca file>`` per request, since they have no shared context to reuse.

Overhead per job = wall time - time inside widget code (reported by the sandbox for
(b); for (a) and (c) the widget's own time is the in-process (c) median of the same
workload). Prints p50/p99 overhead and wall time, jobs per second, and the issue's
targets. Loopback only; bounded by the job counts.

Per-connection cost: a widget times each of ``CONNECTIONS`` TCP connects to the local
server; in (b) each one is brokered (the executor checks the policy, connects and passes
the socket back), in (c) it is a plain connect. The cost added per connection is the
difference of their medians.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.server
import ipaddress
import json
import logging
import os
import platform
import resource
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as a file, this script's folder comes first on sys.path, and the script's
# own name would shadow the ``executor`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import structlog  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from executor.runner import RunRequest  # noqa: E402
from executor.subprocess_runner import SandboxLimits, SubprocessRunner  # noqa: E402
from executor.zygote_runner import SandboxConfig, ZygoteRunner  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOOP = "def get_sidebar_data(context):\n    return {'title': 'noop', 'items': []}\n"
# A fresh process must provide the same runtime the zygote pre-imports.
RUNTIME = "import json, requests, httpx\n"
CONNECTIONS = 20
CONNECT = (
    "import socket, time\n"
    "def get_sidebar_data(context):\n"
    "    times = []\n"
    "    for _ in range(context['n']):\n"
    "        started = time.perf_counter()\n"
    "        s = socket.create_connection(('127.0.0.1', context['port']), 5)\n"
    "        times.append(time.perf_counter() - started)\n"
    "        s.close()\n"
    "    return {'title': 'connect', 'items': [], 'times': times}\n"
)
FETCH = (
    "import requests\n"
    "def get_sidebar_data(context):\n"
    "    r = requests.get(context['url'], timeout=5{verify})\n"
    "    return {{'title': str(r.status_code), 'items': []}}\n"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate small writes: without TCP_NODELAY, Nagle and
    # delayed ACKs add ~40 ms to every TLS response and measure the server, not the sandbox.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benchmark CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    for path in (directory, ca_path):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the sandbox uids must read the CA
    return ca_path, cert_path, key_path


def _serve(tls: ssl.SSLContext | None) -> tuple[http.server.ThreadingHTTPServer, int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _inproc_cpu(code: str, context: dict[str, Any], jobs: int) -> float:
    cpu = time.thread_time()
    for _ in range(jobs):
        _inproc(code, context)
    return (time.thread_time() - cpu) / jobs


def _inproc(code: str, context: dict[str, Any]) -> float:
    namespace: dict[str, Any] = {}
    started = time.perf_counter()
    exec(compile(code, "<widget>", "exec"), namespace)  # noqa: S102 - the no-isolation floor
    namespace["get_sidebar_data"](context)
    return time.perf_counter() - started


def _request(code: str, context: dict[str, Any], widget: str | None) -> RunRequest:
    """A job; naming its widget lets the zygote runner keep a warm worker for it."""
    return RunRequest(code=code, context=context, timeout_s=10, business_id=widget and "bench", widget_id=widget)


def _ticks(values: list[bytes]) -> float:
    return sum(int(value) for value in values) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(runner: Any) -> float:
    """CPU seconds of a runner's processes: the zygote runner's zygote and everything it forked,
    or the children a subprocess runner waited for."""
    if not isinstance(runner, ZygoteRunner):
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
    assert runner._zygote is not None  # the benchmark measures the sandbox's processes
    zygote = runner._zygote.process.pid
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue  # ended meanwhile: its time is in the zygote's children times
        if entry.name == str(zygote):
            total += _ticks(fields[11:15])  # its own time and its waited-for children's
        elif fields[1] == str(zygote).encode():
            total += _ticks(fields[11:13])
    return total


async def _measure(
    runner: Any, code: str, context: dict[str, Any], jobs: int, widget: str | None = None
) -> tuple[list[float], list[float], float]:
    """Wall and in-widget seconds of each job, run one after another, and the CPU seconds per job."""
    walls, inside = [], []
    cpu = time.thread_time() + _tree_cpu(runner)
    for _ in range(jobs):
        started = time.perf_counter()
        outcome = await runner.run(_request(code, context, widget))
        walls.append(time.perf_counter() - started)
        if outcome.status != "ok":
            raise RuntimeError(f"benchmark widget failed: {outcome.error_type}: {outcome.error_message} {outcome.logs}")
        inside.append(outcome.widget_s if outcome.widget_s is not None else float("nan"))
    return walls, inside, (time.thread_time() + _tree_cpu(runner) - cpu) / jobs


async def _throughput(
    runner: Any, code: str, context: dict[str, Any], jobs: int, concurrency: int, widget: str | None = None
) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await runner.run(_request(code, context, widget))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return jobs / (time.perf_counter() - started)


def _listener() -> socket.socket:
    """A TCP listener whose backlog holds every connection of the measurement: nothing
    accepts, so no server thread competes with the measured connects for the CPU."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    return listener


async def _connect_times(zygote: Any, port: int, jobs: int) -> dict[str, list[float]]:
    """Seconds per TCP connect, brokered in the sandbox and plain in this process."""
    context = {"port": port, "n": CONNECTIONS}
    namespace: dict[str, Any] = {}
    exec(compile(CONNECT, "<widget>", "exec"), namespace)  # noqa: S102 - the no-isolation floor
    brokered: list[float] = []
    direct: list[float] = []
    for _ in range(jobs):
        outcome = await zygote.run(RunRequest(code=CONNECT, context=context, timeout_s=10))
        if outcome.status != "ok":
            raise RuntimeError(f"connect widget failed: {outcome.error_type}: {outcome.error_message}")
        brokered += outcome.value["times"]
        direct += namespace["get_sidebar_data"](context)["times"]
    return {"brokered": brokered, "direct": direct}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory, 1), "python": platform.python_version(),
            "kernel": platform.release(), "root": os.geteuid() == 0}  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = _certificates(Path(tmp))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        http_server, http_port = _serve(None)
        https_server, https_port = _serve(tls)
        listener = _listener()
        connect_port = int(listener.getsockname()[1])
        allow = (f"127.0.0.1:{http_port}", f"127.0.0.1:{https_port}", f"127.0.0.1:{connect_port}")
        limits: dict[str, Any] = {"memory_bytes": 256 << 20, "log_bytes": 64 << 10, "result_bytes": 256 << 10}
        fresh = SubprocessRunner(SandboxLimits(**limits, first_uid=60200, slots=8, gid=65534))
        zygote = ZygoteRunner(SandboxConfig(**limits, first_uid=60300, slots=8, gid=65534, egress_allow=allow,
                                            extra_ca_file=str(ca)))  # fmt: skip
        warm = ZygoteRunner(SandboxConfig(**limits, first_uid=60400, slots=8, gid=65534, egress_allow=allow,
                                          extra_ca_file=str(ca)))  # fmt: skip
        layers = await zygote.start()
        await warm.start()
        workloads = {
            "noop": (NOOP, NOOP, {}),
            "http": (FETCH.format(verify=""), FETCH.format(verify=""), {"url": f"http://127.0.0.1:{http_port}/"}),
            "https": (FETCH.format(verify=""), FETCH.format(verify=f", verify={str(ca)!r}"),
                      {"url": f"https://127.0.0.1:{https_port}/"}),
        }  # fmt: skip
        report: dict[str, Any] = {"machine": _machine(), "layers": layers, "paths": {}}
        try:
            for name, (zygote_code, plain_code, context) in workloads.items():
                floor = [_inproc(plain_code, context) for _ in range(args.jobs)]
                floor_cpu = _inproc_cpu(plain_code, context, args.jobs)
                floor_median = statistics.median(floor)
                # Reuse off and on alternate in blocks, so that a change in the machine's load
                # falls on both alike.
                z_walls: list[float] = []
                z_inside: list[float] = []
                w_walls: list[float] = []
                w_inside: list[float] = []
                z_cpu = w_cpu = 0.0
                blocks = 5
                for _ in range(blocks):
                    walls, inside, cpu = await _measure(zygote, zygote_code, context, max(1, args.jobs // blocks))
                    z_walls, z_inside, z_cpu = z_walls + walls, z_inside + inside, z_cpu + cpu / blocks
                    walls, inside, cpu = await _measure(warm, zygote_code, context, max(1, args.jobs // blocks), name)
                    w_walls, w_inside, w_cpu = w_walls + walls, w_inside + inside, w_cpu + cpu / blocks
                f_walls, _, f_cpu = await _measure(fresh, RUNTIME + plain_code, context, args.fresh_jobs)
                z_rate = await _throughput(zygote, zygote_code, context, args.jobs, 4)
                w_rate = await _throughput(warm, zygote_code, context, args.jobs, 4, name)
                f_rate = await _throughput(fresh, RUNTIME + plain_code, context, args.fresh_jobs, 4)
                z_overhead = [w - i for w, i in zip(z_walls, z_inside, strict=True)]
                w_overhead = [w - i for w, i in zip(w_walls, w_inside, strict=True)]
                rows = {
                    "inproc": (floor, [0.0] * len(floor), len(floor) / sum(floor), None, floor_cpu),
                    "zygote": (z_walls, z_overhead, len(z_walls) / sum(z_walls), z_rate, z_cpu),
                    "warm": (w_walls, w_overhead, len(w_walls) / sum(w_walls), w_rate, w_cpu),
                    "fresh": (f_walls, [w - floor_median for w in f_walls], len(f_walls) / sum(f_walls), f_rate,
                              f_cpu),
                }  # fmt: skip
                for path, (walls, overhead, seq, conc, cpu_per_job) in rows.items():
                    report["paths"].setdefault(path, {})[name] = {
                        "overhead_p50_ms": _pct(overhead, 0.5), "overhead_p99_ms": _pct(overhead, 0.99),
                        "wall_p50_ms": _pct(walls, 0.5), "wall_p99_ms": _pct(walls, 0.99),
                        "cpu_per_job_ms": cpu_per_job * 1000,
                        "jobs_per_s": seq, "jobs_per_s_concurrency_4": conc, "jobs": len(walls),
                    }  # fmt: skip
            connects = await _connect_times(zygote, connect_port, args.connect_jobs)
            report["connect"] = {
                "connections": len(connects["brokered"]),
                "brokered_p50_ms": _pct(connects["brokered"], 0.5),
                "brokered_p99_ms": _pct(connects["brokered"], 0.99),
                "direct_p50_ms": _pct(connects["direct"], 0.5),
                "direct_p99_ms": _pct(connects["direct"], 0.99),
                "added_p50_ms": _pct(connects["brokered"], 0.5) - _pct(connects["direct"], 0.5),
            }
        finally:
            await zygote.close()
            await warm.close()
            listener.close()
            http_server.shutdown()
            https_server.shutdown()
    return report


def _print(report: dict[str, Any]) -> bool:
    print("machine:", json.dumps(report["machine"]))
    print("sandbox layers:", json.dumps(report["layers"]))
    print(
        f"{'path':8} {'workload':8} {'overhead p50':>13} {'p99':>8} {'wall p50':>10} {'p99':>8} "
        f"{'CPU/job':>9} {'jobs/s':>8} {'jobs/s c=4':>11}"
    )
    for path in ("fresh", "zygote", "warm", "inproc"):
        for workload, row in report["paths"][path].items():
            conc = row["jobs_per_s_concurrency_4"]
            print(f"{path:8} {workload:8} {row['overhead_p50_ms']:11.2f}ms {row['overhead_p99_ms']:6.2f}ms "
                  f"{row['wall_p50_ms']:8.2f}ms {row['wall_p99_ms']:6.2f}ms {row['cpu_per_job_ms']:7.2f}ms "
                  f"{row['jobs_per_s']:8.1f} {conc if conc is None else round(conc, 1)!s:>11}")  # fmt: skip
    connect = report["connect"]
    print(
        f"per-connection cost: brokered connect p50 {connect['brokered_p50_ms']:.3f} ms "
        f"(p99 {connect['brokered_p99_ms']:.3f}), direct connect p50 {connect['direct_p50_ms']:.3f} ms "
        f"(p99 {connect['direct_p99_ms']:.3f}), added p50 {connect['added_p50_ms']:.3f} ms "
        f"over {connect['connections']} connections"
    )
    zygote, fresh = report["paths"]["zygote"], report["paths"]["fresh"]
    print(f"sandbox overhead per job: p50 {zygote['noop']['overhead_p50_ms']:.2f} ms (no-op widget)")
    checks = [
        ("(b) p50 overhead <= 2 ms", zygote["noop"]["overhead_p50_ms"], 2.0),
        ("(b) added cost per connection p50 <= 0.5 ms", connect["added_p50_ms"], 0.5),
        ("(b) p50 overhead <= 1/40 of (a)", zygote["noop"]["overhead_p50_ms"], fresh["noop"]["overhead_p50_ms"] / 40),
        ("(b) HTTPS job <= 1.5x HTTP job", zygote["https"]["wall_p50_ms"], 1.5 * zygote["http"]["wall_p50_ms"]),
    ]
    ok = True
    for label, value, limit in checks:
        passed = value <= limit
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {label}: {value:.2f} ms (limit {limit:.2f} ms)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs per workload for (b) and (c)")
    parser.add_argument("--fresh-jobs", type=int, default=30, help="jobs per workload for (a), which is slow")
    parser.add_argument("--connect-jobs", type=int, default=30, help=f"jobs of {CONNECTIONS} connections each")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # no per-worker lines
    report = asyncio.run(run(args))
    passed = _print(report)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"executor-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({**report, "targets_met": passed}, indent=1))
    print("results:", out)


if __name__ == "__main__":
    main()
