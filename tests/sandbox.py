"""A real zygote sandbox for tests, with the documented default limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from executor.zygote_runner import SandboxConfig, ZygoteRunner


@asynccontextmanager
async def zygote_runner(
    first_uid: int, slots: int, on_retire: Callable[[str], None] | None = None, **extra: Any
) -> AsyncIterator[ZygoteRunner]:
    """Started, with seccomp and Landlock checked present; closed on exit."""
    config = SandboxConfig(
        memory_bytes=256 * 1024 * 1024,
        log_bytes=64 * 1024,
        result_bytes=256 * 1024,
        first_uid=first_uid,
        slots=slots,
        gid=65534,
        **extra,
    )
    runner = ZygoteRunner(config, on_retire)
    layers = await runner.start()
    try:
        assert layers["seccomp"] and layers["landlock"], layers
        yield runner
    finally:
        await runner.close()
