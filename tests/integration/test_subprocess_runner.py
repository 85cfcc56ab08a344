"""The subprocess runner: each misbehaving widget gets a precise status of its own,
and healthy runs next to it are unaffected."""

from __future__ import annotations

import asyncio
import os

import pytest

from executor.runner import RunRequest
from executor.subprocess_runner import SandboxLimits, SubprocessRunner

LIMITS = SandboxLimits(
    memory_bytes=256 * 1024 * 1024, log_bytes=64 * 1024, result_bytes=256 * 1024, first_uid=60900, slots=8, gid=65534
)
HEALTHY = "def get_sidebar_data(context):\n    print('hello', context['n'])\n    return {'title': 'ok', 'items': []}\n"


@pytest.fixture
def runner() -> SubprocessRunner:
    return SubprocessRunner(LIMITS)


async def _run(runner: SubprocessRunner, code: str, timeout_s: float = 5.0) -> tuple[str, str | None, str]:
    outcome = await runner.run(RunRequest(code=code, context={"n": 1}, timeout_s=timeout_s))
    return outcome.status, outcome.error_type, outcome.error_message or ""


async def test_a_healthy_widget_returns_its_value_and_logs(runner: SubprocessRunner) -> None:
    outcome = await runner.run(RunRequest(code=HEALTHY, context={"n": 7}, timeout_s=5))
    assert outcome.status == "ok"
    assert outcome.value == {"title": "ok", "items": []}
    assert outcome.logs == "hello 7\n"
    assert outcome.logs_truncated is False


@pytest.mark.parametrize(
    ("code", "status", "error_type", "message"),
    [
        (
            "def get_sidebar_data(c):\n    x = 1\n    raise ValueError('boom')\n",
            "error",
            "exception",
            "ValueError: boom (line 3)",
        ),
        ("def get_sidebar_data(c):\n    return object()\n", "error", "invalid_return", "not JSON"),
        ("def get_sidebar_data(c):\n    return float('nan')\n", "error", "invalid_return", "not JSON"),
        (
            "def get_sidebar_data(c):\n    x = []\n    x.append(x)\n    return x\n",
            "error",
            "invalid_return",
            "not JSON",
        ),
        ("x = 1\n", "error", "invalid_widget", "get_sidebar_data is not defined"),
        (
            "def get_sidebar_data(c):\n    return {'title': 'x' * 1_000_000, 'items': []}\n",
            "error",
            "output_too_large",
            "over the",
        ),
        ("def get_sidebar_data(c):\n    b = bytearray(1024 ** 3)\n", "error", "memory", "MemoryError"),
        ("import os\ndef get_sidebar_data(c):\n    os._exit(3)\n", "error", "crashed", "exited with code 3"),
        ("import ctypes\ndef get_sidebar_data(c):\n    ctypes.string_at(0)\n", "error", "crashed", "signal SIGSEGV"),
        ("import sys\ndef get_sidebar_data(c):\n    sys.exit(0)\n", "error", "exception", "SystemExit"),
        ("import missing_module_xyz\n", "error", "exception", "ModuleNotFoundError"),
        ("def get_sidebar_data(c):\n    return (\n", "error", "invalid_widget", "line 2"),
    ],
)
async def test_misbehaving_widgets_get_a_precise_error(
    runner: SubprocessRunner, code: str, status: str, error_type: str, message: str
) -> None:
    got_status, got_type, got_message = await _run(runner, code)
    assert (got_status, got_type) == (status, error_type), got_message
    assert message in got_message


async def test_a_hanging_widget_is_stopped_at_its_timeout(runner: SubprocessRunner) -> None:
    code = "import time\ndef get_sidebar_data(c):\n    while True:\n        time.sleep(0.01)\n"
    outcome = await runner.run(RunRequest(code=code, context={}, timeout_s=0.5))
    assert outcome.status == "timeout"
    assert outcome.error_message == "widget did not finish within its 0.5 s timeout and was stopped"
    assert 0.5 <= outcome.duration_s < 1.5


async def test_megabytes_of_output_are_capped_with_a_note(runner: SubprocessRunner) -> None:
    code = (
        "def get_sidebar_data(c):\n"
        "    for _ in range(100):\n"
        "        print('x' * 100_000)\n"
        "    return {'title': 't', 'items': []}\n"
    )
    outcome = await runner.run(RunRequest(code=code, context={}, timeout_s=10))
    assert outcome.status == "ok"
    assert outcome.logs_truncated is True
    assert len(outcome.logs.encode()) < LIMITS.log_bytes + 200
    assert outcome.logs.endswith("first 65536 kept]")


async def test_the_widget_environment_is_empty_and_unprivileged(runner: SubprocessRunner) -> None:
    code = (
        "import os\n"
        "def get_sidebar_data(c):\n"
        "    try:\n"
        "        env = open('/proc/self/environ').read()\n"
        "    except PermissionError:\n"
        "        env = 'closed'\n"
        "    return {'title': str(os.getuid()) + '|' + env + '|' + ','.join(sorted(os.environ)), 'items': []}\n"
    )
    outcome = await runner.run(RunRequest(code=code, context={}, timeout_s=5))
    assert outcome.status == "ok", outcome.error_message
    uid, environ, names = outcome.value["title"].split("|")
    assert environ in ("", "closed"), "empty, or closed because the process is undumpable"
    assert set(filter(None, names.split(","))) <= {"LC_CTYPE"}, "only Python's own locale coercion"
    if os.geteuid() == 0:
        assert LIMITS.first_uid <= int(uid) < LIMITS.first_uid + LIMITS.slots
    else:
        assert uid == str(os.geteuid())


async def test_bad_widgets_do_not_disturb_healthy_ones_running_alongside(runner: SubprocessRunner) -> None:
    bad = [
        "import time\ndef get_sidebar_data(c):\n    time.sleep(30)\n",
        "def get_sidebar_data(c):\n    raise RuntimeError('x')\n",
        "def get_sidebar_data(c):\n    b = bytearray(1024 ** 3)\n",
    ]
    runs = [runner.run(RunRequest(code=code, context={"n": 1}, timeout_s=1.0)) for code in bad]
    runs += [runner.run(RunRequest(code=HEALTHY, context={"n": n}, timeout_s=5.0)) for n in range(4)]
    outcomes = await asyncio.gather(*runs)
    assert [o.status for o in outcomes[:3]] == ["timeout", "error", "error"]
    assert all(o.status == "ok" for o in outcomes[3:])
    assert [o.logs for o in outcomes[3:]] == [f"hello {n}\n" for n in range(4)]


async def test_widgets_running_side_by_side_cannot_read_or_signal_each_other(runner: SubprocessRunner) -> None:
    """One widget tries to read the memory of, and kill, every other widget process it can see."""
    victim = (
        "import time\n"
        "def get_sidebar_data(c):\n"
        "    secret = 'victim-secret-' + 'x' * 8\n"
        "    time.sleep(1.5)\n"
        "    return {'title': secret, 'items': []}\n"
    )
    # The attacker keeps scanning for a second, so its attempts overlap the victim's life.
    attacker = (
        "import os, signal, time\n"
        "def get_sidebar_data(c):\n"
        "    me, found, until = os.getpid(), set(), time.monotonic() + 1.0\n"
        "    while time.monotonic() < until:\n"
        "        for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "            if int(pid) == me:\n"
        "                continue\n"
        "            try:\n"
        "                with open(f'/proc/{pid}/mem', 'rb') as f:\n"
        "                    found.add('mem ' + pid)\n"
        "            except OSError:\n"
        "                pass\n"
        "            try:\n"
        "                os.kill(int(pid), signal.SIGKILL)\n"
        "                found.add('killed ' + pid)\n"
        "            except OSError:\n"
        "                pass\n"
        "    return {'title': ';'.join(sorted(found)), 'items': []}\n"
    )
    victim_outcome, attack = await asyncio.gather(
        runner.run(RunRequest(code=victim, context={}, timeout_s=5)),
        runner.run(RunRequest(code=attacker, context={}, timeout_s=5)),
    )
    assert attack.status == "ok", attack.error_message
    assert attack.value["title"] == ""
    assert victim_outcome.status == "ok"
    assert victim_outcome.value["title"] == "victim-secret-xxxxxxxx"
