"""Where a sidebar's CPU goes: CPU seconds per component over a measured window, from /proc.

A component is a set of process trees: the processes a benchmark started (by pid, each
with all its descendants) or a shared server found by its command line (RabbitMQ's
``beam.smp``, FerretDB, Redis). A tree's CPU is the sum over its live processes of their
own time and of what their reaped children used (``utime + stime + cutime + cstime``), so a
sandboxed child that exits inside the window is still counted, once, through its parent.
The difference of two snapshots divided by the sidebars in between is the CPU each
sidebar cost each component; the benchmark client is a component too, since it shares
the machine. Linux only; elsewhere every figure is None.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# Shared servers, by a fragment of their command line.
SERVERS = {"broker (RabbitMQ)": "beam.smp", "database (FerretDB)": "ferretdb", "redis": "redis-server"}
CLIENT = "benchmark client"


@dataclass(frozen=True)
class _Proc:
    ppid: int
    cpu_s: float  # own + reaped children's
    command: str


def _processes() -> dict[int, _Proc]:
    found: dict[int, _Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        # After the command: state, ppid, ..., utime (index 11), stime, cutime, cstime.
        ticks = sum(int(value) for value in fields[11:15])
        found[int(entry)] = _Proc(int(fields[1]), ticks * _TICK_S, command)
    return found


def _trees(roots: Iterable[int], children: Mapping[int, list[int]], processes: Mapping[int, _Proc]) -> set[int]:
    """The live processes of the trees under ``roots``."""
    tree: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in processes and pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def _client_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuMeter:
    """Snapshots of CPU seconds per component.

    ``started`` maps a component to the pids the benchmark started for it (each with its
    descendants); ``carved`` moves the processes of a started component whose command line
    holds a fragment (and their descendants) into a component of their own, e.g. an
    executor's sandbox; ``servers`` maps a component to a command-line fragment."""

    started: Mapping[str, Sequence[int]]
    carved: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    servers: Mapping[str, str] = field(default_factory=lambda: dict(SERVERS))
    client: Callable[[], float] = _client_s

    def snapshot(self) -> dict[str, float] | None:
        if not os.path.isdir("/proc"):
            return None
        processes = _processes()
        children: dict[int, list[int]] = {}
        for pid, proc in processes.items():
            children.setdefault(proc.ppid, []).append(pid)
        members = {name: _trees(roots, children, processes) for name, roots in self.started.items()}
        for name, (parent, fragment) in self.carved.items():
            inside = members.get(parent, set())
            carved = _trees((pid for pid in inside if fragment in processes[pid].command), children, processes)
            members[parent] = inside - carved
            members[name] = carved
        claimed = set().union(*members.values())
        for name, fragment in self.servers.items():
            members[name] = {pid for pid, proc in processes.items() if fragment in proc.command and pid not in claimed}
        seconds = {name: sum(processes[pid].cpu_s for pid in pids) for name, pids in members.items()}
        seconds[CLIENT] = self.client()
        return seconds


def per_sidebar_ms(
    before: Mapping[str, float] | None, after: Mapping[str, float] | None, sidebars: int
) -> dict[str, float] | None:
    """CPU milliseconds per sidebar by component, and their ``total``; None without both snapshots."""
    if before is None or after is None or sidebars <= 0:
        return None
    spent = {name: max(0.0, after[name] - before.get(name, 0.0)) * 1000 / sidebars for name in after}
    result = {name: round(ms, 2) for name, ms in spent.items() if ms >= 0.005}
    result["total"] = round(sum(spent.values()), 2)
    return result


def describe(per_sidebar: Mapping[str, float] | None) -> str:
    """One line: the total, then each component, largest first."""
    if not per_sidebar:
        return "n/a (a stack this run did not start, or no /proc)"
    parts = sorted(((ms, name) for name, ms in per_sidebar.items() if name != "total"), reverse=True)
    return f"{per_sidebar['total']} ms: " + ", ".join(f"{name} {ms}" for ms, name in parts)
