"""Process-level plumbing for a service entry point: signals and hardening."""

from __future__ import annotations

import asyncio
import ctypes
import signal
from collections.abc import Awaitable, Callable

_PR_SET_DUMPABLE = 4


def make_undumpable() -> bool:
    """Forbid core dumps and ptrace, and make ``/proc/<pid>/environ`` and ``mem``
    unreadable to processes without CAP_SYS_PTRACE, even under the same uid.
    This is what keeps widget code away from this process's credentials."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0


def run_service(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``serve(stop)`` until it returns; SIGTERM and SIGINT set ``stop``."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    asyncio.run(main())
