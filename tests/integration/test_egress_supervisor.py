"""The egress supervisor on its own, over a channel the test holds as the widget would:
hostile requests get errors and the supervisor keeps serving; refusals are remembered;
an allowed connection arrives connected. Loopback listeners of the test only."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from executor.egress.policy import EgressPolicy
from executor.egress.supervisor import JobEgress, refuse_pending


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


@pytest.fixture
async def widget_end(listener: socket.socket) -> AsyncIterator[tuple[socket.socket, JobEgress]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    port = listener.getsockname()[1]
    policy = EgressPolicy.parse([80, 443], [f"127.0.0.1:{port}"])
    with ThreadPoolExecutor(1) as resolver:
        egress = JobEgress(policy, ours, 5.0, resolver)
        egress.start()
        try:
            yield theirs, egress
        finally:
            egress.stop()
            ours.close()
            theirs.close()


async def _ask(channel: socket.socket, payload: bytes, fd: int | None = None) -> tuple[dict[str, Any], list[int]]:
    """Send a raw request (with a fresh pair's end unless ``fd`` is given) and await the answer."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        socket.send_fds(channel, [payload], [theirs.fileno() if fd is None else fd])
        theirs.close()
        ours.setblocking(False)
        data, fds = await _receive(ours)
    return json.loads(data), fds


async def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(sock.fileno(), readable.set_result, None)
    try:
        await asyncio.wait_for(readable, 5)
    finally:
        loop.remove_reader(sock.fileno())
    data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    return data, fds


def _connect(host: str, port: int, kind: str = "tcp", family: int = 0) -> bytes:
    return json.dumps({"op": "connect", "host": host, "port": port, "family": family, "kind": kind}).encode()


async def test_an_allowed_address_comes_back_connected(
    widget_end: tuple[socket.socket, JobEgress], listener: socket.socket
) -> None:
    channel, egress = widget_end
    answer, fds = await _ask(channel, _connect("127.0.0.1", listener.getsockname()[1]))
    assert answer == {"ok": True} and len(fds) == 1
    with socket.socket(fileno=fds[0]) as connected:
        assert connected.getpeername() == listener.getsockname()
    assert egress.denials == []


@pytest.mark.parametrize(
    ("request_payload", "message"),
    [
        (_connect("127.0.0.1", 5672), "connection to 127.0.0.1:5672 is not allowed (loopback)"),
        (_connect("::ffff:127.0.0.1", 5672), "connection to [::ffff:127.0.0.1]:5672 is not allowed (loopback"),
        (_connect("localhost", 5672, family=socket.AF_INET), "connection to 127.0.0.1:5672 (localhost)"),
        (_connect("127.0.0.1", 53, kind="udp"), "UDP to 127.0.0.1:53 is not allowed"),
        (_connect("metadata.invalid", 53, kind="udp"), "UDP to metadata.invalid:53 is not allowed"),
    ],
)
async def test_a_refusal_is_answered_and_remembered(
    widget_end: tuple[socket.socket, JobEgress], request_payload: bytes, message: str
) -> None:
    channel, egress = widget_end
    answer, fds = await _ask(channel, request_payload)
    assert fds == []
    assert answer["error"] == "denied" and answer["message"].startswith(message), answer
    assert egress.denials == [answer["message"]]


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"op": "mount"}', _connect("", 80), _connect("127.0.0.1", 0), _connect("x" * 300, 80),
     b'{"op": "connect", "host": "127.0.0.1", "port": "80", "kind": "tcp"}',
     b'{"op": "connect", "host": "127.0.0.1", "port": 80, "family": 17, "kind": "tcp"}'],
)  # fmt: skip
async def test_a_request_that_makes_no_sense_gets_an_error_and_serving_goes_on(
    widget_end: tuple[socket.socket, JobEgress], listener: socket.socket, payload: bytes
) -> None:
    channel, egress = widget_end
    answer, fds = await _ask(channel, payload)
    assert (answer["ok"], answer["error"], fds) == (False, "os", [])
    again, fds = await _ask(channel, _connect("127.0.0.1", listener.getsockname()[1]))
    assert again == {"ok": True}
    os.close(fds[0])
    assert egress.denials == []


async def test_an_fd_that_is_not_a_socket_is_dropped_and_serving_goes_on(
    widget_end: tuple[socket.socket, JobEgress], listener: socket.socket
) -> None:
    channel, _ = widget_end
    read_fd, write_fd = os.pipe()
    try:
        socket.send_fds(channel, [_connect("127.0.0.1", listener.getsockname()[1])], [read_fd])
        answer, fds = await _ask(channel, _connect("127.0.0.1", listener.getsockname()[1]))
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert answer == {"ok": True}
    os.close(fds[0])


async def test_requests_sent_between_jobs_are_dropped_unanswered_and_the_next_job_is_served(
    widget_end: tuple[socket.socket, JobEgress], listener: socket.socket
) -> None:
    channel, egress = widget_end
    egress.stop()  # the job ended; the worker waits for its next one
    listener.setblocking(False)
    waiting = []
    for _ in range(3):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        socket.send_fds(channel, [_connect("127.0.0.1", listener.getsockname()[1])], [theirs.fileno()])
        theirs.close()
        waiting.append(ours)
    assert refuse_pending(egress._channel) == 3
    for ours in waiting:
        with ours:
            assert ours.recv(4096) == b"", "no answer: the other end was closed"
    with pytest.raises(BlockingIOError):
        listener.accept()
    with ThreadPoolExecutor(1) as resolver:
        next_job = JobEgress(EgressPolicy.parse([80, 443], [f"127.0.0.1:{listener.getsockname()[1]}"]),
                             egress._channel, 5.0, resolver)  # fmt: skip
        next_job.start()
        try:
            answer, fds = await _ask(channel, _connect("127.0.0.1", listener.getsockname()[1]))
        finally:
            next_job.stop()
    assert answer == {"ok": True}
    os.close(fds[0])
