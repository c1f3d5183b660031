"""``StreamReader`` details no other test pinned down, found by mutation testing.

A read cancelled just before data arrives, the bytes kept when an asyncio
protocol reports a lost connection, the AnyIO ``receive()`` contract, the
messages of the reader's own errors, and its ``repr``. Where CPython or
AnyIO can answer, the test asks them.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from backends import ASYNCIO_BACKENDS
from reference import on_asyncio
from test_reader_source import MIN_RECEIVE, Endless, MemoryByteStream, Recorder

import portastreams
from portastreams import StreamReader

pytestmark = pytest.mark.anyio


async def test_data_fed_right_after_a_read_was_cancelled_is_kept() -> None:
    """The read is cancelled, then (before its task runs again) data arrives:
    ``feed_data`` neither fails nor loses it, as CPython's reader."""

    async def scenario(reader: Any) -> tuple[bool, bytes]:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(reader.read, 10)
            await anyio.wait_all_tasks_blocked()
            task_group.cancel_scope.cancel()
            reader.feed_data(b"kept")  # the waiter is cancelled, not yet gone
        return (task_group.cancel_scope.cancelled_caught, await reader.read(10))

    async def on_cpython() -> tuple[bool, bytes]:
        return await scenario(asyncio.StreamReader())

    expected = await on_asyncio(on_cpython)
    assert await scenario(StreamReader()) == expected == (True, b"kept")


@pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
async def test_protocol_connection_lost_keeps_the_buffered_bytes() -> None:
    """``StreamReaderProtocol.connection_lost(exc)`` with bytes buffered: reads
    return them first, then raise ``exc`` -- every time, the same object.

    A documented difference (docs/porting.rst): CPython's reader raises at
    once and the buffered bytes are lost, as this test checks too.
    """
    error = ConnectionResetError(104, "Connection reset by peer")

    async def cpython() -> tuple[object, ...]:
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        protocol.data_received(b"last words")
        protocol.connection_lost(error)
        try:
            await reader.read(100)
        except ConnectionResetError as exc:
            return ("raised", exc is error)
        return ("returned",)

    assert await on_asyncio(cpython) == ("raised", True)

    reader = StreamReader()
    protocol = portastreams.StreamReaderProtocol(reader)
    protocol.data_received(b"last words")
    protocol.connection_lost(error)
    assert await reader.read(100) == b"last words"
    for _ in range(2):
        with pytest.raises(ConnectionResetError) as info:
            await reader.read(100)
        assert info.value is error
        assert reader.exception() is error


async def test_receive_takes_anyio_default_and_checks_max_bytes() -> None:
    """``receive()`` is AnyIO's: its default size and its error, as AnyIO's own
    buffered stream (fed the same bytes) has them."""
    data = bytes(range(256)) * 1024  # more than any default receive
    default = (
        inspect.signature(anyio.abc.ByteReceiveStream.receive)
        .parameters["max_bytes"]
        .default
    )

    send, receive = anyio.create_memory_object_stream[bytes](1)
    async with send, receive:
        await send.send(data)
        theirs = BufferedByteReceiveStream(MemoryByteStream(receive))
        expected_chunk = await theirs.receive()
        with pytest.raises(ValueError, match="max_bytes") as expected_error:
            await theirs.receive(0)

    reader = StreamReader()
    reader.feed_data(data)
    chunk = await reader.receive()
    assert len(chunk) == len(expected_chunk) == default
    assert chunk == expected_chunk
    with pytest.raises(ValueError, match="max_bytes") as error:
        await reader.receive(0)
    assert str(error.value) == str(expected_error.value)


def test_feed_data_after_feed_eof_says_so() -> None:
    """A clear error (CPython fails an ``assert``; see docs/porting.rst)."""
    reader = StreamReader()
    reader.feed_eof()
    with pytest.raises(
        RuntimeError, match=r"^feed_data\(\) called after feed_eof\(\)$"
    ):
        reader.feed_data(b"late")
    assert not reader._buffer


class PausableTransport:
    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_set_transport_twice_says_so() -> None:
    """CPython asserts ``'Transport already set'``; the same words, as a RuntimeError."""
    reader = StreamReader()
    reader.set_transport(PausableTransport())
    with pytest.raises(RuntimeError, match=r"^Transport already set$"):
        reader.set_transport(PausableTransport())


async def test_repr_of_a_fed_reader_shows_its_waiter(backend_name: str) -> None:
    """As CPython's ``<StreamReader waiter=<Future pending>>``; on trio the
    waiter is an event."""
    reader = StreamReader()
    reader.feed_data(b"abc")
    assert repr(reader) == "<StreamReader 3 bytes>"
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(reader.readexactly, 5)
        await anyio.wait_all_tasks_blocked()
        text = repr(reader)
        reader.feed_data(b"de")
    waiter = "<Future pending" if backend_name != "trio" else "<waiter pending>"
    assert text.startswith(f"<StreamReader 3 bytes waiter={waiter}")
    assert repr(reader) == "<StreamReader>"


async def test_repr_of_a_source_mode_reader_shows_its_source() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1)
    source = MemoryByteStream(receive)
    reader = StreamReader.from_stream(source)
    async with send, anyio.create_task_group() as task_group:
        task_group.start_soon(reader.read, 10)
        await anyio.wait_all_tasks_blocked()
        text = repr(reader)
        await send.send(b"x")
    assert text == f"<StreamReader waiter=<receiving> source={source!r}>"
    assert repr(reader) == f"<StreamReader source={source!r}>"
    await reader.aclose()


@pytest.mark.parametrize("size", [100_000, 200_000, 300_000, 1_000_000])
async def test_readexactly_buffers_at_most_one_receive_beyond_what_it_needs(
    size: int,
) -> None:
    """The memory bound of the API: a reader never holds more than the current
    read needs plus one receive chunk -- also when part of it was buffered."""
    recorder = Recorder(Endless(b"0123456789"))
    reader = StreamReader.from_stream(recorder)
    recorder.reader = reader
    await reader.readexactly(10)  # leaves most of one receive buffered
    held = len(reader._buffer)
    assert held > 0
    recorder.max_buffer = 0
    data = await reader.readexactly(size)
    assert len(data) == size
    assert recorder.max_buffer <= max(size, held) + MIN_RECEIVE
