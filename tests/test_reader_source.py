"""``StreamReader.from_stream``: a reader that pulls from an AnyIO byte stream.

Over AnyIO memory object streams (through a small byte-stream adapter), over
endless synthetic streams, and over real loopback TCP sockets. The reader
must receive only when its buffer cannot answer the current read, ask for at
least 64 KiB at a time, keep its buffer bounded, turn the end of the stream
into EOF and connection failures into the builtin ``OSError`` subclasses with
the AnyIO error as ``__cause__``, losing nothing it had already buffered.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from portastreams import IncompleteReadError, LimitOverrunError, StreamReader

pytestmark = pytest.mark.anyio

KIB = 1024
MIN_RECEIVE = 64 * KIB


class MemoryByteStream(anyio.abc.ByteReceiveStream):
    """A byte stream over a memory object stream of ``bytes`` items.

    An item longer than ``max_bytes`` is handed out in pieces. The sender
    closing its end is the end of the stream.
    """

    def __init__(self, items: MemoryObjectReceiveStream[bytes]) -> None:
        self.items = items
        self.pending = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.pending:
            self.pending = await self.items.receive()
        else:
            await anyio.lowlevel.checkpoint()
        chunk, self.pending = self.pending[:max_bytes], self.pending[max_bytes:]
        return chunk

    async def aclose(self) -> None:
        await self.items.aclose()


class Recorder(anyio.abc.ByteReceiveStream):
    """Wraps a byte stream; records every receive and what the reader held then."""

    def __init__(self, inner: anyio.abc.ByteReceiveStream) -> None:
        self.inner = inner
        self.reader: StreamReader | None = None
        self.sizes: list[int] = []  # max_bytes of each receive
        self.buffered: list[bytes] = []  # the reader's buffer at each receive
        self.chunks: list[bytes] = []  # what each successful receive returned
        self.max_buffer = 0  # the largest reader buffer right after a receive

    async def receive(self, max_bytes: int = 65536) -> bytes:
        assert self.reader is not None
        self.sizes.append(max_bytes)
        held = len(self.reader._buffer)
        self.buffered.append(bytes(self.reader._buffer))
        chunk = await self.inner.receive(max_bytes)
        self.chunks.append(chunk)
        self.max_buffer = max(self.max_buffer, held + len(chunk))
        return chunk

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes


class Endless(anyio.abc.ByteReceiveStream):
    """An endless stream of ``pattern`` repeated, exactly ``max_bytes`` per receive."""

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self.position = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.lowlevel.checkpoint()
        start = self.position % len(self.pattern)
        repeats = (start + max_bytes) // len(self.pattern) + 1
        chunk = (self.pattern * repeats)[start : start + max_bytes]
        self.position += max_bytes
        return chunk

    async def aclose(self) -> None:
        pass


class Failing(anyio.abc.ByteReceiveStream):
    """Hands out ``chunks``, then raises ``error`` from every receive."""

    def __init__(self, chunks: list[bytes], error: BaseException) -> None:
        self.chunks = chunks
        self.error = error
        self.calls = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.chunks:
            return self.chunks.pop(0)
        raise self.error

    async def aclose(self) -> None:
        pass


def recorded(
    inner: anyio.abc.ByteReceiveStream, *, limit: int = 2**16
) -> tuple[StreamReader, Recorder]:
    recorder = Recorder(inner)
    reader = StreamReader.from_stream(recorder, limit=limit)
    recorder.reader = reader
    return reader, recorder


MemoryReader = Callable[
    ..., tuple[StreamReader, Recorder, MemoryObjectSendStream[bytes]]
]


@pytest.fixture
def memory_reader() -> Iterator[MemoryReader]:
    """Make readers over memory object streams; close the streams afterwards."""
    streams: list[MemoryObjectSendStream[bytes] | MemoryObjectReceiveStream[bytes]] = []

    def make(
        limit: int = 2**16,
    ) -> tuple[StreamReader, Recorder, MemoryObjectSendStream[bytes]]:
        send, receive = anyio.create_memory_object_stream[bytes](100)
        streams.extend((send, receive))
        reader, recorder = recorded(MemoryByteStream(receive), limit=limit)
        return reader, recorder, send

    yield make
    for stream in streams:
        stream.close()


# -- receiving only when needed -------------------------------------------------------------


async def test_a_thousand_lines_in_one_chunk_need_one_receive(
    memory_reader: MemoryReader,
) -> None:
    reader, recorder, send = memory_reader()
    lines = [b"line %d\n" % i for i in range(1000)]
    send.send_nowait(b"".join(lines))
    send.close()
    for line in lines:
        assert await reader.readline() == line
    assert len(recorder.sizes) == 1
    assert await reader.readline() == b""  # the receive that sees the end
    assert len(recorder.sizes) == 2
    assert reader.at_eof()
    assert await reader.readline() == b""
    assert await reader.read() == b""
    assert len(recorder.sizes) == 2  # EOF is remembered


async def test_receives_only_when_the_buffer_cannot_answer(
    memory_reader: MemoryReader,
) -> None:
    reader, recorder, send = memory_reader()
    send.send_nowait(b"a\nb\nc")
    assert await reader.readline() == b"a\n"
    assert await reader.readline() == b"b\n"
    assert await reader.read(1) == b"c"
    assert len(recorder.sizes) == 1
    send.send_nowait(b"12345678")
    assert await reader.readexactly(3) == b"123"
    assert await reader.readuntil(b"5") == b"45"
    assert await reader.read(100) == b"678"  # buffered: returned without receiving
    assert len(recorder.sizes) == 2
    send.send_nowait(b"x\r")
    send.send_nowait(b"\ny")
    assert await reader.readuntil((b"\r\n", b"\n")) == b"x\r\n"
    assert len(recorder.sizes) == 4
    assert recorder.buffered == [b"", b"", b"", b"x\r"]
    send.close()
    assert await reader.read() == b"y"


@pytest.mark.parametrize("limit", [1, 100, 2**16, 2**17])
async def test_receive_sizes_are_at_least_64_kib(limit: int) -> None:
    reader, recorder = recorded(Endless(b"0123456789\n"), limit=limit)
    for _ in range(20_000):
        assert await reader.readexactly(11) == b"0123456789\n"
    assert await reader.read(10) == b"0123456789"
    assert len(await reader.readexactly(300_000)) == 300_000
    assert len(recorder.sizes) >= 3
    assert min(recorder.sizes) >= MIN_RECEIVE
    assert min(recorder.sizes) >= min(limit, 2**18)


# -- bounded memory -------------------------------------------------------------------------


async def test_readline_buffers_at_most_one_chunk_beyond_the_line() -> None:
    reader, recorder = recorded(Endless(b"x" * 99 + b"\n"))
    for _ in range(5000):
        assert await reader.readline() == b"x" * 99 + b"\n"
    assert len(recorder.sizes) >= 5
    # Every receive happened with no complete line buffered...
    assert all(b"\n" not in held for held in recorder.buffered)
    # ...so the buffer never held more than a partial line plus one chunk.
    assert recorder.max_buffer <= 99 + max(recorder.sizes)


async def test_readexactly_buffers_at_most_one_chunk_beyond_n() -> None:
    n = 1_000_000
    reader, recorder = recorded(Endless(os.urandom(1000)))
    assert len(await reader.readexactly(n)) == n
    assert all(len(held) < n for held in recorder.buffered)
    assert recorder.max_buffer < n + max(recorder.sizes)
    assert len(reader._buffer) < max(recorder.sizes)


async def test_readuntil_gives_up_after_limit_plus_one_chunk() -> None:
    limit = 200_000
    reader, recorder = recorded(Endless(b"abc"), limit=limit)
    with pytest.raises(LimitOverrunError) as caught:
        await reader.readuntil(b"never")
    assert caught.value.consumed > limit
    # It stopped receiving as soon as more than `limit` bytes were searched.
    assert all(len(held) - len(b"never") < limit for held in recorder.buffered)
    assert recorder.max_buffer <= limit + len(b"never") + max(recorder.sizes)
    # The data stays buffered, as in asyncio.
    assert len(reader._buffer) == recorder.max_buffer


async def test_readline_without_newline_clears_and_stays_bounded() -> None:
    limit = 100_000
    reader, recorder = recorded(Endless(b"no newline "), limit=limit)
    with pytest.raises(ValueError, match="Separator is not found"):
        await reader.readline()
    assert recorder.max_buffer <= limit + max(recorder.sizes)
    assert len(reader._buffer) == 0
    assert len(recorder.sizes) <= limit // MIN_RECEIVE + 2


async def test_large_read_with_an_empty_buffer_takes_one_receive() -> None:
    reader, recorder = recorded(Endless(b"abcdefgh"))
    data = await reader.read(100_000)
    assert 0 < len(data) <= 100_000
    assert data == (b"abcdefgh" * 20_000)[: len(data)]
    assert len(recorder.sizes) == 1
    assert len(reader._buffer) == 0


async def test_read_n_returns_what_one_receive_gave(
    memory_reader: MemoryReader,
) -> None:
    reader, recorder, send = memory_reader()
    send.send_nowait(b"abc")
    assert await reader.read(10) == b"abc"
    send.send_nowait(b"defgh")
    assert await reader.read(2) == b"de"
    assert await reader.read(10) == b"fgh"
    assert len(recorder.sizes) == 2


# -- the end of the stream ---------------------------------------------------------------------


async def test_end_of_stream_is_eof(memory_reader: MemoryReader) -> None:
    reader, _, send = memory_reader()
    send.send_nowait(b"line\npartial")
    send.close()
    assert await reader.readline() == b"line\n"
    assert await reader.readline() == b"partial"
    assert await reader.readline() == b""
    assert reader.at_eof()
    with pytest.raises(anyio.EndOfStream):
        await reader.receive()


@pytest.mark.parametrize("method", ["readexactly", "readuntil"])
async def test_end_of_stream_in_the_middle_of_a_read(
    method: str, memory_reader: MemoryReader
) -> None:
    reader, _, send = memory_reader()
    send.send_nowait(b"abc")
    send.close()
    read = reader.readexactly(10) if method == "readexactly" else reader.readuntil()
    with pytest.raises(IncompleteReadError) as caught:
        await read
    assert caught.value.partial == b"abc"
    assert caught.value.expected == (10 if method == "readexactly" else None)
    assert reader.at_eof()


async def test_read_all_returns_everything_at_the_end_of_the_stream(
    memory_reader: MemoryReader,
) -> None:
    reader, recorder, send = memory_reader()
    chunks = [os.urandom(50_000) for _ in range(10)]
    for chunk in chunks:
        send.send_nowait(chunk)
    send.close()
    assert await reader.read() == b"".join(chunks)
    assert len(recorder.sizes) == 11


async def test_a_closed_source_is_eof() -> None:
    reader = StreamReader.from_stream(Failing([b"abc"], anyio.ClosedResourceError()))
    assert await reader.read() == b"abc"
    assert reader.at_eof()
    assert reader.exception() is None


# -- connection failures -----------------------------------------------------------------------


async def test_broken_stream_becomes_the_os_error_that_caused_it() -> None:
    cause = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    broken = anyio.BrokenResourceError()
    broken.__cause__ = cause
    source = Failing([b"line\npart"], broken)
    reader = StreamReader.from_stream(source)
    assert await reader.readline() == b"line\n"
    with pytest.raises(ConnectionResetError) as caught:
        await reader.readline()
    error = caught.value
    assert error.errno == errno.ECONNRESET
    assert error.__cause__ is broken
    assert reader.exception() is error
    # Nothing buffered is lost; later reads raise the same error again and
    # do not touch the stream.
    assert bytes(reader._buffer) == b"part"
    calls = source.calls
    for read in (reader.readline, reader.read, lambda: reader.read(1)):
        with pytest.raises(ConnectionResetError) as again:
            await read()
        assert again.value is error
    assert source.calls == calls


async def test_broken_stream_without_cause_is_a_connection_reset() -> None:
    broken = anyio.BrokenResourceError()
    reader = StreamReader.from_stream(Failing([], broken))
    with pytest.raises(ConnectionResetError) as caught:
        await reader.readexactly(1)
    assert caught.value.__cause__ is broken
    assert isinstance(caught.value, OSError)


async def test_os_error_from_the_stream_is_raised_as_is() -> None:
    error = BrokenPipeError(errno.EPIPE, "Broken pipe")
    reader = StreamReader.from_stream(Failing([b"abc"], error))
    with pytest.raises(BrokenPipeError) as caught:
        await reader.readexactly(5)
    assert caught.value is error
    assert bytes(reader._buffer) == b"abc"
    with pytest.raises(BrokenPipeError) as again:
        await reader.read(100)
    assert again.value is error


async def test_broken_stream_on_a_direct_read() -> None:
    """read(n) with an empty buffer hands the receive over directly."""
    broken = anyio.BrokenResourceError()
    reader = StreamReader.from_stream(Failing([], broken))
    with pytest.raises(ConnectionResetError) as caught:
        await reader.read(2**20)
    assert reader.exception() is caught.value
    with pytest.raises(ConnectionResetError):
        await reader.read(1)


# -- the rest of the interface -------------------------------------------------------------


async def test_a_second_waiter_gets_runtime_error(memory_reader: MemoryReader) -> None:
    reader, _, send = memory_reader()
    async with anyio.create_task_group() as tg:
        results: list[bytes] = []

        async def first() -> None:
            results.append(await reader.readexactly(4))

        tg.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match=r"^readuntil\(\) called while"):
            await reader.readline()
        send.send_nowait(b"abcd")
    assert results == [b"abcd"]


async def test_aclose_closes_the_source(memory_reader: MemoryReader) -> None:
    reader, _, send = memory_reader()
    send.send_nowait(b"buffered\nrest")
    assert await reader.readline() == b"buffered\n"
    await reader.aclose()
    assert reader.at_eof()
    with pytest.raises(anyio.BrokenResourceError):
        send.send_nowait(b"more")  # nobody receives any more


async def test_receive_drains_the_buffer_before_the_source(
    memory_reader: MemoryReader,
) -> None:
    reader, recorder, send = memory_reader()
    send.send_nowait(b"abc\ndef")
    assert await reader.readline() == b"abc\n"
    assert await reader.receive(2) == b"de"
    assert await reader.receive() == b"f"
    assert len(recorder.sizes) == 1
    send.send_nowait(b"ghi")
    assert await reader.receive() == b"ghi"
    send.close()
    with pytest.raises(anyio.EndOfStream):
        await reader.receive()


# -- real sockets --------------------------------------------------------------------------------


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[
    tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]
]:
    """A connected loopback TCP pair: (client, server)."""
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener:
            socket_listener = listener.listeners[0]
            assert isinstance(socket_listener, anyio.abc.SocketListener)
            port = socket_listener.extra(SocketAttribute.local_port)
            client = await anyio.connect_tcp("127.0.0.1", port)
            server = await socket_listener.accept()
        async with client, server:
            yield client, server


async def reset(stream: anyio.abc.SocketStream) -> None:
    """Close ``stream`` with an RST instead of a FIN (SO_LINGER 0)."""
    sock = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def test_socket_lines_and_eof() -> None:
    async with tcp_pair() as (peer, stream):
        reader, recorder = recorded(stream)
        async with anyio.create_task_group() as tg:

            async def talk() -> None:
                await peer.send(b"hello\nwor")
                await anyio.sleep(0.01)
                await peer.send(b"ld\nbye")
                await peer.send_eof()

            tg.start_soon(talk)
            with anyio.fail_after(5):
                assert await reader.readline() == b"hello\n"
                assert await reader.readline() == b"world\n"
                assert await reader.readline() == b"bye"
                assert await reader.readline() == b""
        assert reader.at_eof()
        assert min(recorder.sizes) >= MIN_RECEIVE
        assert reader.extra(SocketAttribute.remote_port) == peer.extra(
            SocketAttribute.local_port
        )


async def test_socket_large_transfer_in_order() -> None:
    data = os.urandom(3_000_000)
    async with tcp_pair() as (peer, stream):
        reader, recorder = recorded(stream)
        received = bytearray()
        async with anyio.create_task_group() as tg:

            async def send() -> None:
                await peer.send(data)
                await peer.send_eof()

            tg.start_soon(send)
            with anyio.fail_after(10):
                received += await reader.readexactly(1_000_000)
                received += await reader.read(12_345)
                while chunk := await reader.read(70_000):
                    received += chunk
        assert received == data
        assert recorder.max_buffer <= 1_000_000 + max(recorder.sizes)


async def test_socket_reset_keeps_what_was_buffered() -> None:
    async with tcp_pair() as (peer, stream):
        reader = StreamReader.from_stream(stream)
        await peer.send(b"line1\nline2\npart")
        with anyio.fail_after(5):
            assert await reader.readline() == b"line1\n"
            # line2 and "part" were received with line1 ...
            assert bytes(reader._buffer) == b"line2\npart"
            await reset(peer)
            # ... so the reset does not stop them from being read,
            assert await reader.readline() == b"line2\n"
            # and the read that needs more data gets the reset.
            with pytest.raises(ConnectionResetError) as caught:
                await reader.readline()
        error = caught.value
        assert isinstance(error, OSError)
        assert error.errno == errno.ECONNRESET
        assert isinstance(error.__cause__, anyio.BrokenResourceError)
        assert reader.exception() is error
        assert bytes(reader._buffer) == b"part"  # nothing buffered is lost
        for read in (reader.readline, reader.read, lambda: reader.readexactly(1)):
            with pytest.raises(ConnectionResetError) as again:
                await read()
            assert again.value is error


async def test_socket_reset_in_the_middle_of_readexactly() -> None:
    async with tcp_pair() as (peer, stream):
        reader = StreamReader.from_stream(stream)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                errors: list[BaseException] = []

                async def read() -> None:
                    try:
                        await reader.readexactly(20)
                    except OSError as exc:
                        errors.append(exc)

                tg.start_soon(read)
                await peer.send(b"0123456789")
                while len(reader._buffer) < 10:
                    await anyio.sleep(0.001)
                await reset(peer)
        assert len(errors) == 1
        assert isinstance(errors[0], ConnectionResetError)
        assert bytes(reader._buffer) == b"0123456789"


async def test_socket_data_sent_before_a_reset_is_read_first() -> None:
    """Bytes the peer sent before resetting arrive before the error."""
    async with tcp_pair() as (peer, stream):
        reader = StreamReader.from_stream(stream)
        await peer.send(b"first\nsecond\n")
        await anyio.sleep(0.01)
        await reset(peer)
        with anyio.fail_after(5):
            assert await reader.readline() == b"first\n"
            assert await reader.readline() == b"second\n"
            with pytest.raises(ConnectionResetError):
                await reader.readline()


async def test_socket_peer_close_is_eof_for_every_read() -> None:
    reads: list[Callable[[StreamReader], Awaitable[Any]]] = [
        lambda r: r.read(),
        lambda r: r.readline(),
        lambda r: r.read(5),
    ]
    for read in reads:
        async with tcp_pair() as (peer, stream):
            reader = StreamReader.from_stream(stream)
            await peer.aclose()
            with anyio.fail_after(5):
                assert await read(reader) == b""
            assert reader.at_eof()
            assert reader.exception() is None
