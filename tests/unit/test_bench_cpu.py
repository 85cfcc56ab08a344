"""The benchmark's CPU meter, on real processes: a grandchild that burns CPU and exits inside
the window is counted once, in its tree's component, and a carved part leaves its parent's."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator

from benchmarks.cpu import CLIENT, CpuMeter, describe, per_sidebar_ms

BURN_S = 0.3
BURNER = f"""
import sys, time
end = time.process_time() + {BURN_S}
while time.process_time() < end:
    pass
print("burnt", flush=True)
if sys.argv[1] == "hold":
    sys.stdin.readline()
"""
# Starts the burner when told, relays "burnt" and, with "reap", reaps the burner first.
PARENT = f"""
import subprocess, sys
mode = sys.argv[1]
sys.stdin.readline()  # go
burner = subprocess.Popen(
    [sys.executable, "-c", {BURNER!r}, mode, "burner-marker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)
assert burner.stdout.readline().strip() == "burnt"
if mode == "reap":
    burner.wait()
print("burnt", flush=True)
sys.stdin.readline()  # end
burner.kill()
burner.wait()
"""


@contextlib.contextmanager
def family(mode: str) -> Iterator[tuple[int, Callable[[], None]]]:
    """A parent process (its pid) and a function that has it start the burner and wait until it burnt."""
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as parent:
        stdin, stdout = parent.stdin, parent.stdout
        assert stdin is not None and stdout is not None

        def burn() -> None:
            stdin.write("go\n")
            stdin.flush()
            assert stdout.readline().strip() == "burnt"

        try:
            yield parent.pid, burn
        finally:
            stdin.write("end\n")
            stdin.flush()
            parent.wait(timeout=30)


def test_a_reaped_grandchild_is_counted_once_in_its_tree() -> None:
    with family("reap") as (pid, burn):
        meter = CpuMeter({"tree": [pid]}, servers={})
        before = meter.snapshot()
        burn()  # the burner ran and is gone: only its parent's cutime holds its time
        after = meter.snapshot()
    assert before is not None and after is not None
    assert BURN_S * 0.9 <= after["tree"] - before["tree"] <= BURN_S + 0.3
    assert set(after) == {"tree", CLIENT}


def test_a_carved_part_leaves_its_parent_component() -> None:
    with family("hold") as (pid, burn):
        meter = CpuMeter({"service": [pid]}, carved={"burner": ("service", "burner-marker")}, servers={})
        before = meter.snapshot()
        burn()  # the burner is alive, holding its time itself
        after = meter.snapshot()
    assert before is not None and after is not None
    assert after["burner"] >= BURN_S * 0.9
    assert after["service"] - before["service"] < BURN_S / 2


def test_per_sidebar_divides_the_deltas_and_adds_a_total() -> None:
    before = {"orchestrator": 1.0, "broker": 2.0, CLIENT: 0.5}
    after = {"orchestrator": 1.8, "broker": 2.4, CLIENT: 0.5}
    result = per_sidebar_ms(before, after, 100)
    assert result == {"orchestrator": 8.0, "broker": 4.0, "total": 12.0}
    assert per_sidebar_ms(None, after, 100) is None
    assert per_sidebar_ms(before, after, 0) is None
    assert describe(result) == "12.0 ms: orchestrator 8.0, broker 4.0"
    assert describe(None).startswith("n/a")
