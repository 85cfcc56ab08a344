"""The worker pool's bookkeeping, with fake workers and a fake clock: which job gets which
idle worker or uid slot, whom eviction and idling retire, and that a slot is never lost."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from executor.workers import Worker, WorkerKey, WorkerPool, worker_key

A = worker_key("b1", "w1", "code")
B = worker_key("b1", "w2", "code")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def channels() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for channel in made:
        channel.close()


def _pool(slots: int, clock: Clock, retired: list[tuple[int, str]]) -> WorkerPool:
    return WorkerPool(1000, slots, 60.0, lambda worker, reason: retired.append((worker.pid, reason)), clock)


def _worker(pid: int, uid: int, key: WorkerKey | None, channels: list[socket.socket]) -> Worker:
    ours, theirs = socket.socketpair()
    channels += [ours, theirs]
    return Worker(pid=pid, channel=ours, uid=uid, key=key, cpu_hard_s=24)


def test_the_key_names_business_widget_and_code() -> None:
    assert worker_key("b1", "w1", "code") != worker_key("b2", "w1", "code")
    assert worker_key("b1", "w1", "code") != worker_key("b1", "w1", "code ")
    assert worker_key(None, "w1", "code") is None
    assert worker_key("b1", None, "code") is None


async def test_an_idle_worker_goes_to_a_job_of_its_key_only(channels: list[socket.socket]) -> None:
    retired: list[tuple[int, str]] = []
    pool = _pool(2, Clock(), retired)
    uid = await pool.acquire(A)
    assert uid == 1000
    pool.park(_worker(7, 1000, A, channels))
    assert await pool.acquire(B) == 1001, "another key gets the free slot, not the idle worker"
    worker = await pool.acquire(A)
    assert isinstance(worker, Worker) and worker.pid == 7
    assert retired == []


async def test_without_a_free_slot_the_least_recently_used_idle_worker_is_evicted(
    channels: list[socket.socket],
) -> None:
    retired: list[tuple[int, str]] = []
    clock = Clock()
    pool = _pool(2, clock, retired)
    for pid, key in ((1, A), (2, B)):
        uid = await pool.acquire(key)
        assert isinstance(uid, int)
        pool.park(_worker(pid, uid, key, channels))
        clock.now += 1
    taken = await pool.acquire(worker_key("b2", "w1", "code"))
    assert taken == 1000, "the slot of worker 1, used least recently"
    assert retired == [(1, "evicted")]
    assert [worker.pid for worker in pool.idle] == [2]


async def test_a_job_waits_while_every_slot_runs_a_job(channels: list[socket.socket]) -> None:
    pool = _pool(1, Clock(), [])
    uid = await _uid(pool)
    waiting = asyncio.create_task(pool.acquire(A))
    await asyncio.sleep(0)
    assert not waiting.done()
    pool.park(_worker(5, uid, A, channels))
    worker = await asyncio.wait_for(waiting, 5)
    assert isinstance(worker, Worker) and worker.pid == 5, "a parked worker of its key wakes it"


async def test_workers_idle_for_their_time_are_retired_and_their_slots_freed(channels: list[socket.socket]) -> None:
    retired: list[tuple[int, str]] = []
    clock = Clock()
    pool = _pool(2, clock, retired)
    pool.park(_worker(1, await _uid(pool), A, channels))
    clock.now += 30
    pool.park(_worker(2, await _uid(pool), B, channels))
    clock.now += 31
    assert pool.expire() == pytest.approx(29.0)
    assert retired == [(1, "idle")]
    clock.now += 29
    assert pool.expire() is None
    assert retired == [(1, "idle"), (2, "idle")]
    assert {await _uid(pool), await _uid(pool)} == {1000, 1001}


async def test_the_expiry_timer_retires_what_is_due_and_waits_for_the_next(channels: list[socket.socket]) -> None:
    """Driven by hand with the fake clock: the loop's timer only decides when it is called."""
    retired: list[tuple[int, str]] = []
    clock = Clock()
    pool = _pool(2, clock, retired)
    loop = asyncio.get_running_loop()
    pool.park(_worker(1, await _uid(pool), A, channels))
    assert pool._expiry is not None and pool._expiry.when() == pytest.approx(loop.time() + 60, abs=1)
    clock.now += 30
    pool.park(_worker(2, await _uid(pool), B, channels))
    clock.now += 31
    pool._on_expiry()
    assert retired == [(1, "idle")]
    assert pool._expiry is not None and pool._expiry.when() == pytest.approx(loop.time() + 29, abs=1)
    clock.now += 29
    pool._on_expiry()
    assert retired == [(1, "idle"), (2, "idle")]
    assert pool._expiry is None, "nothing idle: no timer until the next park"
    pool.park(_worker(3, await _uid(pool), A, channels))
    assert pool._expiry is not None
    pool.retire_all("shutdown")
    assert pool._expiry is None


async def test_discarding_a_worker_retires_it_and_frees_its_slot(channels: list[socket.socket]) -> None:
    retired: list[tuple[int, str]] = []
    pool = _pool(1, Clock(), retired)
    worker = _worker(3, await _uid(pool), A, channels)
    pool.park(worker)
    assert await pool.acquire(A) is worker
    pool.discard(worker, "unclean")
    assert retired == [(3, "unclean")]
    assert pool.idle == []
    assert await pool.acquire(B) == 1000


async def test_an_idle_worker_that_died_frees_its_slot(channels: list[socket.socket]) -> None:
    retired: list[tuple[int, str]] = []
    pool = _pool(1, Clock(), retired)
    pool.park(_worker(3, await _uid(pool), A, channels))
    pool.forget(3)
    pool.forget(4)  # not idle: not the pool's to forget
    assert retired == [(3, "died")]
    assert await pool.acquire(A) == 1000


async def test_retire_all_frees_every_slot(channels: list[socket.socket]) -> None:
    retired: list[tuple[int, str]] = []
    pool = _pool(2, Clock(), retired)
    pool.park(_worker(1, await _uid(pool), A, channels))
    pool.park(_worker(2, await _uid(pool), B, channels))
    pool.retire_all("shutdown")
    assert sorted(retired) == [(1, "shutdown"), (2, "shutdown")]
    assert pool.idle == []
    assert {await _uid(pool), await _uid(pool)} == {1000, 1001}


async def _uid(pool: WorkerPool) -> int:
    taken = await pool.acquire(None)
    assert isinstance(taken, int)
    return taken
