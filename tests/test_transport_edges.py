"""``StreamTransport`` at its edges: its own API compared with asyncio's transports,
unexpected failures in its background tasks, water marks and task names.

``StreamTransport`` carries every connection that has no event-loop transport
underneath (trio, ``wrap_stream``, TLS on uvloop and Python 3.10); these tests
use it over in-memory streams, which works on every backend. What asyncio's
own transports do comes from running the same calls on a real asyncio socket
transport in the same test (``on_asyncio``).
"""

from __future__ import annotations

import array
import asyncio
import logging
import socket
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream
from reference import on_asyncio, outcome

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams.testing import connected_pair, memory_stream_pair

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


class FaultyStream(ByteStream):
    """A byte stream whose ``send()`` or ``receive()`` raises ``error`` (a bug
    in the stream, or a connection failure it reports as a builtin error)."""

    def __init__(
        self,
        *,
        send_error: BaseException | None = None,
        receive_error: BaseException | None = None,
    ) -> None:
        self._send_error = send_error
        self._receive_error = receive_error
        self._received = anyio.Event()

    async def send(self, item: bytes) -> None:
        if self._send_error is not None:
            raise self._send_error

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._receive_error is not None:
            raise self._receive_error
        await anyio.sleep_forever()
        raise AssertionError("not reached")

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


# -- failures in the background tasks -------------------------------------------


async def fail_by_sending(reader: StreamReader, writer: StreamWriter) -> None:
    writer.write(b"data")
    await anyio.sleep(0.05)  # the flusher sends, fails, and the close is done
    await writer.drain()


async def fail_by_receiving(reader: StreamReader, writer: StreamWriter) -> None:
    await reader.read(10)


@pytest.mark.parametrize(
    ("side", "task", "operation"),
    [
        ("send_error", "flusher", fail_by_sending),
        ("receive_error", "receiver", fail_by_receiving),
    ],
    ids=["sending", "receiving"],
)
async def test_a_bug_in_a_background_task_is_logged_not_disguised(
    caplog: pytest.LogCaptureFixture, side: str, task: str, operation: Any
) -> None:
    """An exception that is not a connection failure, raised in the task that
    sends ``write()``'s bytes or in the one that receives, is logged at ERROR
    with its traceback; the connection then fails with a connection error
    whose cause is that exception."""
    bug = ValueError("a bug in the stream")
    with (
        caplog.at_level(logging.ERROR, logger="portastreams"),
        anyio.fail_after(TIMEOUT),
    ):
        reader, writer = portastreams.wrap_stream(FaultyStream(**{side: bug}))
        with pytest.raises(ConnectionResetError) as info:
            await operation(reader, writer)
        writer.close()
        await writer.wait_closed()
    assert info.value.__cause__ is bug
    records = [r for r in caplog.records if r.name == "portastreams"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("ERROR", f"portastreams {task} failed")
    ]
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is bug


async def test_a_builtin_connection_error_is_raised_as_it_is() -> None:
    """A stream that reports its failure as a builtin ``OSError`` (as sockets
    do) has it raised as it is, without a cause, as asyncio raises the socket's
    error: not wrapped, and never its own cause."""
    error = ConnectionResetError(104, "Connection reset by peer")
    _, writer = portastreams.wrap_stream(FaultyStream(send_error=error))
    with anyio.fail_after(TIMEOUT):
        writer.write(b"data")
        await anyio.sleep(0.05)  # the flusher sends, fails, and the close is done
        with pytest.raises(ConnectionResetError) as info:
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    assert info.value is error
    assert error.__cause__ is None


# -- the transport's own API, compared with asyncio's ---------------------------------


async def asyncio_transport_calls(calls: list[tuple[str, Any]]) -> list[Any]:
    """Each ``(method, argument)`` called on an asyncio socket transport: what it
    raised (class, message), or the bytes the peer then received."""
    left, right = socket.socketpair()
    with left, right:
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, sock=left
        )
        results: list[Any] = []
        try:
            for method, argument in calls:
                try:
                    getattr(transport, method)(argument)
                except Exception as exc:
                    results.append(outcome(exc))
                else:
                    await asyncio.sleep(0.05)
                    right.setblocking(False)
                    results.append(right.recv(1024))
        finally:
            transport.abort()
    return results


async def portastreams_transport_calls(calls: list[tuple[str, Any]]) -> list[Any]:
    results: list[Any] = []
    async with connected_pair() as (client, server):
        transport = client[1].transport
        for method, argument in calls:
            try:
                getattr(transport, method)(argument)
            except Exception as exc:
                results.append(outcome(exc))
            else:
                await client[1].drain()
                with anyio.move_on_after(0.05):
                    results.append(await server[0].read(1024))
    return results


TRANSPORT_CALLS = [
    pytest.param([("write", "text")], id="write-str"),
    pytest.param([("write", None)], id="write-none"),
    pytest.param([("write", array.array("B", b"xy"))], id="write-array"),
    pytest.param(
        [("writelines", [b"a", array.array("B", b"bc"), bytearray(b"d")])],
        id="writelines-bytes-like",
    ),
    pytest.param([("writelines", [b"a", "b"])], id="writelines-str"),
    pytest.param([("write", b"plain"), ("write", memoryview(b"view"))], id="bytes"),
]


@pytest.mark.parametrize("calls", TRANSPORT_CALLS)
async def test_transport_write_matches_asyncio(calls: list[tuple[str, Any]]) -> None:
    """``writer.transport.write()`` / ``writelines()`` take and refuse what
    asyncio's socket transports take and refuse, with their messages."""
    expected = await on_asyncio(lambda: asyncio_transport_calls(calls))
    with anyio.fail_after(TIMEOUT):
        actual = await portastreams_transport_calls(calls)
    assert actual == expected


# -- water marks ------------------------------------------------------------------


async def test_lowering_the_high_water_mark_pauses_writing() -> None:
    """``set_write_buffer_limits()`` below what is buffered makes ``drain()``
    wait until the buffer is down to the new low-water mark, as asyncio's
    transports do (they pause the protocol at once, and resume it only as
    the buffer drains)."""
    left, right = memory_stream_pair(1024)  # nobody reads the right end yet
    _, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TIMEOUT):
        writer.write(b"x" * 16384)
        await writer.drain()  # 16 KiB: under the default 64 KiB
        assert writer.transport.get_write_buffer_size() > 4096
        writer.transport.set_write_buffer_limits(high=4096, low=1024)
        with anyio.move_on_after(0.2) as waited:
            await writer.drain()
        assert waited.cancelled_caught
        # Raising them again does not release drain() while the peer stalls:
        # asyncio's transports resume only as the buffer drains.
        writer.transport.set_write_buffer_limits(high=1 << 20)
        with anyio.move_on_after(0.2) as waited:
            await writer.drain()
        assert waited.cancelled_caught
        writer.transport.set_write_buffer_limits(high=4096, low=1024)
        received = bytearray()

        async def read_all() -> None:
            while len(received) < 16384:
                received.extend(await right.receive())

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(read_all)
            await writer.drain()
            assert writer.transport.get_write_buffer_size() <= 1024
        assert received == b"x" * 16384
        writer.transport.abort()
        await writer.wait_closed()
        await right.aclose()


# -- names ---------------------------------------------------------------------------


def running_task_names() -> set[str]:
    trio = __import__("sys").modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        root = trio.lowlevel.current_root_task()
        names: set[str] = set()
        pending = [root]
        while pending:
            task = pending.pop()
            names.add(task.name)
            for nursery in task.child_nurseries:
                pending.extend(nursery.child_tasks)
        return names
    return {task.get_name() for task in asyncio.all_tasks()}


async def test_background_tasks_are_named() -> None:
    """The receiver and the flusher of a connection carry their names, for
    whoever lists the running tasks (a debugger, a leak check)."""
    left, right = memory_stream_pair(1024)
    _, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TIMEOUT):
        writer.write(b"x" * 8192)  # more than fits: the flusher waits
        await anyio.sleep(0.05)
        names = running_task_names()
        writer.transport.abort()
        await writer.wait_closed()
        await right.aclose()
    assert {"portastreams receiver", "portastreams flusher"} <= names


# -- write_eof ---------------------------------------------------------------------


async def test_write_eof_with_nothing_queued_reaches_the_peer() -> None:
    """``write_eof()`` with nothing left to send: the peer reads the end of
    the stream at once, and the connection stays open for reading."""
    async with connected_pair() as (client, server):
        with anyio.fail_after(TIMEOUT):
            client[1].write(b"last")
            await client[1].drain()
            assert await server[0].readexactly(4) == b"last"
            client[1].write_eof()
            assert await server[0].read() == b""
            assert not client[1].is_closing()
            server[1].write(b"answer")
            assert await client[0].readexactly(6) == b"answer"
