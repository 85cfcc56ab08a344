"""``make bench``: the product, a reference and the Celery chord peer back to back, on one workload, in one table.

Runs ``benchmarks/e2e.py`` (throughput, idle and open-loop scenarios; it starts its own
stack), then the reference ``benchmarks/peers/bare_shape.py`` (the product's broker and
database path with nothing but the libraries: no sandbox, no product code; throughput and
idle, on quorum queues as the product has them and on classic ones), then
``benchmarks/peers/celery_chord.py`` for each ``--peers`` variant, then the floor
(``asyncio.gather`` of the same GETs in this process against the same upstream), and
prints markdown tables with the ratios the issue sets as targets. Everything each run wrote
is gathered in ``benchmarks/results/compare-<timestamp>.json``.

    .venv/bin/python benchmarks/compare.py
    .venv/bin/python benchmarks/compare.py --events 50 --open-duration 5 --peers threads
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import LOOPBACK, PYTHON, RESULTS_DIR, ROOT, free_port, machine_facts, relative, write_report
from benchmarks.workload import THROUGHPUT_FIRST, bench_widgets, floor_closed_loop, start_upstream

TARGET_THROUGHPUT_RATIO = 1.5
TARGET_P50_RATIO = 0.6
TARGET_IDLE_READY_MS = 10.0
TARGET_IDLE_FIRST_CARD_MS = 5.0


def run_child(name: str, command: list[str], output: Path) -> dict[str, Any] | None:
    print(f"\n==> {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT)
    try:
        returncode = child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGTERM)  # the child cleans up what it started
        child.wait(timeout=180)
        raise
    print(f"<== {name}: exit {returncode} in {time.monotonic() - started:.0f}s", flush=True)
    if not output.exists():
        return None
    report: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    return report


async def measure_floor(events: int, concurrency: int, widgets: int) -> dict[str, Any]:
    port = free_port()
    server = await start_upstream(LOOPBACK, port)
    async with server:
        return await floor_closed_loop(
            f"http://{LOOPBACK}:{port}", bench_widgets(widgets, THROUGHPUT_FIRST), events, concurrency
        )


# --- the tables -------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "n/a" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _ratio(a: Any, b: Any) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "NOT met"


def throughput_table(rows: list[tuple[str, dict[str, Any] | None]], reference: dict[str, Any] | None) -> list[str]:
    ref_rate = (reference or {}).get("sidebars_per_s")
    ref_p50 = ((reference or {}).get("latency_ms") or {}).get("p50")
    lines = [
        "| system | completed | all ok | p50 | p99 | sidebars/s | throughput vs chord (threads) "
        "| p50 vs chord (threads) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in rows:
        if result is None:
            lines.append(f"| {name} | did not run | | | | | | |")
            continue
        latency, rate = result["latency_ms"], result.get("sidebars_per_s")
        completed = f"{result['completed']} / {result.get('submitted', result['completed'])}"
        lines.append(
            f"| {name} | {completed} | {result.get('all_widgets_ok', result['completed'])} | {_ms(latency['p50'])} | "
            f"{_ms(latency['p99'])} | {rate} | {_ratio(rate, ref_rate)} | {_ratio(latency['p50'], ref_p50)} |"
        )
    return lines


def targets(product: dict[str, Any] | None, reference: dict[str, Any] | None) -> list[str]:
    if not product or not reference:
        return ["targets: n/a (the product or the chord did not run)"]
    rate = product["sidebars_per_s"] / reference["sidebars_per_s"]
    p50 = product["latency_ms"]["p50"] / reference["latency_ms"]["p50"]
    return [
        f"target: product throughput >= {TARGET_THROUGHPUT_RATIO}x chord (threads): {rate:.2f}x, "
        f"{_verdict(rate >= TARGET_THROUGHPUT_RATIO)}",
        f"target: product p50 <= {TARGET_P50_RATIO}x chord (threads): {p50:.2f}x, {_verdict(p50 <= TARGET_P50_RATIO)}",
    ]


def commands_lines(product: dict[str, Any] | None) -> list[str]:
    if product is None:
        return ["database commands per sidebar: n/a (the product did not run)"]
    per = product.get("db_commands_per_sidebar") or {}
    lines = ["database commands per sidebar (product, throughput run; metric delta / sidebars):"]
    for service in ("orchestrator", "store"):
        counts = per.get(service)
        if not counts:
            lines.append(f"  {service}: n/a (no {service}_db_commands_total on its /metrics)")
            continue
        detail = ", ".join(f"{command} {value}" for command, value in counts.items() if command != "total")
        lines.append(f"  {service}: {counts['total']} ({detail})")
    return lines


def cpu_table(rows: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    """CPU milliseconds per sidebar by component in each throughput run (benchmarks/cpu.py)."""
    runs = [(label, (result or {}).get("cpu_ms_per_sidebar")) for label, result in rows]
    runs = [(label, cpu) for label, cpu in runs if cpu]
    if not runs:
        return ["CPU per sidebar: n/a"]
    components: list[str] = []
    for _, cpu in runs:
        components += [
            name for name in sorted(cpu, key=lambda n: -cpu[n]) if name != "total" and name not in components
        ]
    lines = [
        "CPU per sidebar, ms (throughput runs; /proc deltas over the measured events, every process on the machine "
        "that serves them, the benchmark client included):",
        "",
        "| component | " + " | ".join(label for label, _ in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for name in [*components, "total"]:
        cells = [f"{cpu[name]:.1f}" if name in cpu else "" for _, cpu in runs]
        lines.append(f"| {'**total**' if name == 'total' else name} | " + " | ".join(cells) + " |")
    return lines


def idle_lines(idle: dict[str, Any] | None) -> list[str]:
    if not idle:
        return ["idle single sidebar: did not run"]
    ready = idle["ready_over_slowest_ms"]
    first = idle.get("first_card_over_fastest_ms") or {}
    gap_s = (idle.get("config") or {}).get("gap_s")
    spacing = f"each {gap_s} s after the previous sidebar" if gap_s else "one at a time"
    return [
        f"idle single sidebar (demo's four widgets, {idle['completed']} events, {spacing}; widget duration_ms p50 "
        f"{_ms(idle['widget_duration_ms']['p50'])}; sidebar p50 {_ms(idle['latency_ms']['p50'])}):",
        "| measure | p50 | p90 | target |",
        "|---|---|---|---|",
        f"| sidebar.ready - publish - slowest widget | {_ms(ready['p50'])} | {_ms(ready['p90'])} | "
        f"<= {TARGET_IDLE_READY_MS:.0f} ms: "
        f"{_verdict(None if ready['p50'] is None else ready['p50'] <= TARGET_IDLE_READY_MS)} |",
        f"| first sidebar.widget - publish - fastest widget | {_ms(first.get('p50'))} | {_ms(first.get('p90'))} | "
        f"<= {TARGET_IDLE_FIRST_CARD_MS:.0f} ms: "
        f"{_verdict(None if first.get('p50') is None else first['p50'] <= TARGET_IDLE_FIRST_CARD_MS)} |",
    ]


def reference_idle_lines(queues: str, idle: dict[str, Any] | None) -> list[str]:
    """The same measures for the reference: what the shape costs with nothing of the product in it."""
    if not idle:
        return []
    first = idle.get("first_card_over_fastest_ms") or {}
    return [
        f"the reference on {queues} queues (benchmarks/peers/bare_shape.py, same widgets, {idle['completed']} "
        f"events): sidebar p50 "
        f"{_ms(idle['latency_ms']['p50'])}; sidebar.ready - slowest widget p50 "
        f"{_ms(idle['ready_over_slowest_ms']['p50'])}, first card - fastest widget p50 {_ms(first.get('p50'))}",
    ]


def open_loop_table(rows: list[tuple[str, dict[str, Any] | None]]) -> list[str]:
    floor = next((r["floor_ms"] for _, r in rows if r and "floor_ms" in r), None)
    config: dict[str, Any] = next((r.get("config", {}) for _, r in rows if r), {})
    lines = [
        f"open loop: {config.get('rate_per_s')} conversations/s for {config.get('duration_s')} s, "
        "each widget's endpoint answering after 50-200 ms:",
        "| system | completed | all ok | first card p50 | first card p99 | complete p50 | complete p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        if r is None:
            lines.append(f"| {name} | did not run | | | | | |")
            continue
        first = r.get("first_card_ms") or {}
        lines.append(
            f"| {name} | {r['completed']} / {r['submitted']} | {r['all_widgets_ok']} | {_ms(first.get('p50'))} | "
            f"{_ms(first.get('p99'))} | {_ms(r['latency_ms']['p50'])} | {_ms(r['latency_ms']['p99'])} |"
        )
    if floor:
        lines.append(
            f"| floor (fastest / slowest widget's delay) | | | {_ms(floor['first_card'])} | "
            f"| {_ms(floor['complete'])} | |"
        )
    lines.append("(the chord has no per-widget cards: its first card is its first widget task's completion)")
    return lines


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--widgets", type=int, default=5)
    parser.add_argument("--idle-events", type=int, default=30)
    parser.add_argument("--open-rate", type=float, default=20.0)
    parser.add_argument("--open-duration", type=float, default=15.0, help="seconds of publishing (default 15)")
    parser.add_argument("--open-drain", type=float, default=15.0)
    parser.add_argument("--peers", default="threads,prefork,hop", help="chord variants, comma-separated")
    parser.add_argument("--peer-open-loop", default="threads", help="chord variants that also run the open loop")
    parser.add_argument("--no-product", dest="product", action="store_false", help="skip benchmarks/e2e.py")
    parser.add_argument(
        "--bare",
        default="quorum,classic",
        help="queue types the reference benchmarks/peers/bare_shape.py runs with, comma-separated ('' skips it)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="bound for each run, seconds")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = RESULTS_DIR / f"compare-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    common = ["--events", str(args.events), "--concurrency", str(args.concurrency), "--widgets", str(args.widgets)]
    common += ["--open-rate", str(args.open_rate), "--open-duration", str(args.open_duration)]
    common += ["--open-drain", str(args.open_drain), "--timeout", str(args.timeout)]
    reports: dict[str, dict[str, Any] | None] = {}
    failed = []

    if args.product:
        output = out_dir / "product.json"
        command = [PYTHON, "benchmarks/e2e.py", "--scenarios", "throughput,idle,open-loop", *common]
        command += ["--idle-events", str(args.idle_events), "--output", str(output)]
        reports["product"] = run_child("product", command, output)
    for queues in [q.strip() for q in args.bare.split(",") if q.strip()]:
        output = out_dir / f"bare-shape-{queues}.json"
        command = [PYTHON, "benchmarks/peers/bare_shape.py", "--queues", queues, "--scenarios", "throughput,idle"]
        command += ["--events", str(args.events), "--concurrency", str(args.concurrency)]
        command += ["--widgets", str(args.widgets), "--idle-events", str(args.idle_events)]
        command += ["--timeout", str(args.timeout), "--output", str(output)]
        reports[f"bare-shape-{queues}"] = run_child(f"bare shape, {queues} queues (reference)", command, output)
    open_loop_peers = {p.strip() for p in args.peer_open_loop.split(",") if p.strip()}
    for variant in [p.strip() for p in args.peers.split(",") if p.strip()]:
        output = out_dir / f"chord-{variant}.json"
        scenarios = "throughput,open-loop" if variant in open_loop_peers else "throughput"
        command = [PYTHON, "benchmarks/peers/celery_chord.py", "--variant", variant, "--scenarios", scenarios, *common]
        reports[f"chord-{variant}"] = run_child(f"chord {variant}", [*command, "--output", str(output)], output)
    for name, report in reports.items():
        if report is None:
            failed.append(name)
    print("\n==> floor: asyncio.gather of the same GETs in one process", flush=True)
    floor = asyncio.run(measure_floor(args.events, args.concurrency, args.widgets))

    def scenario(name: str, which: str) -> dict[str, Any] | None:
        report = reports.get(name)
        result: dict[str, Any] | None = (report or {}).get("scenarios", {}).get(which)
        return result

    product, chord_threads = scenario("product", "throughput"), scenario("chord-threads", "throughput")
    labels = {
        "bare-shape-quorum": "reference: the product's shape, libraries only (no sandbox, no product code)",
        "bare-shape-classic": "the same reference on classic queues (not replicated)",
        "chord-threads": "Celery chord, threads pool (10), no sandbox",
        "chord-prefork": "Celery chord, prefork pool (10), no sandbox",
        "chord-hop": "Celery chord + conversation.opened hop, quorum queues, confirms (threads 10)",
    }
    rows = [("product (sandboxed), benchmarks/e2e.py", product)]
    rows += [(labels.get(name, name), scenario(name, "throughput")) for name in reports if name != "product"]
    rows.append(("floor: asyncio.gather of the same GETs, one process", floor))
    machine = machine_facts()
    product_machine = (reports.get("product") or {}).get("machine", {})
    lines = [
        "",
        f"machine: {machine['cpu_model']}, {machine['cpu_count']} cores, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}; executor concurrency {product_machine.get('executor_concurrency', 'n/a')}",
        f"throughput: {args.events} events, {args.concurrency} in flight, {args.widgets} widgets each doing one "
        "HTTP GET to the local upstream:",
        *throughput_table(rows, chord_threads),
        *targets(product, chord_threads),
        "",
        *commands_lines(product),
        "",
        *cpu_table(
            [("product", product)] + [(name, scenario(name, "throughput")) for name in reports if name != "product"]
        ),
        "",
        *idle_lines(scenario("product", "idle")),
        *(
            line
            for name in reports
            if name.startswith("bare-shape")
            for line in reference_idle_lines(name.removeprefix("bare-shape-"), scenario(name, "idle"))
        ),
        "",
        *open_loop_table(
            [("product (sandboxed)", scenario("product", "open-loop"))]
            + [
                (labels.get(n, n), scenario(n, "open-loop"))
                for n in reports
                if n != "product" and scenario(n, "open-loop")
            ]
        ),
    ]
    print("\n".join(lines))
    summary = {
        "benchmark": "compare",
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": machine,
        "config": vars(args),
        "floor": floor,
        "runs": reports,
        "table": lines,
    }
    path = write_report(summary, RESULTS_DIR / f"compare-{stamp}.json")
    print(f"\nresults: {relative(path)} (each run's own JSON in {relative(out_dir)})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
