"""Test helpers for code built on portastreams: a connection without a network,
and the connection contract as a checker.

:func:`connected_pair` gives two connected ``(reader, writer)`` pairs over
in-memory streams, on any backend, so protocol code can be tested on asyncio
and trio without sockets::

    async with portastreams.testing.connected_pair() as (client, server):
        client_reader, client_writer = client
        server_reader, server_writer = server
        client_writer.write(b"PING\\r\\n")
        assert await server_reader.readline() == b"PING\\r\\n"

:func:`check_connection_contract` runs the whole stream contract -- reads and
limits, flow control against a clogged peer, half-close, close, abort, a
peer's close and reset seen without a read, a peer that vanishes mid-frame,
cancellation, connection information -- over pairs that a factory makes. The
project runs it on every way a connection can be built; a library that makes
its own connections (a custom transport, a proxy) can run it on its own.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, TypeVar

import anyio
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from ._connections import wrap_stream
from ._exceptions import IncompleteReadError, LimitOverrunError
from ._memory import DEFAULT_CAPACITY, MemoryByteStream, memory_stream_pair
from ._reader import DEFAULT_LIMIT, StreamReader
from ._writer import StreamWriter

__all__ = [
    "SCENARIOS",
    "ConnectionEnd",
    "MemoryByteStream",
    "PairFactory",
    "check_connection_contract",
    "connected_pair",
    "memory_stream_pair",
]

_E = TypeVar("_E", bound=BaseException)

#: One end of a connection: its reader and its writer.
ConnectionEnd = tuple[StreamReader, StreamWriter]

#: Makes two connected ends with the given ``limit`` (an async context
#: manager, so it can clean up servers and sockets).
PairFactory = Callable[
    [int], AbstractAsyncContextManager[tuple[ConnectionEnd, ConnectionEnd]]
]

#: asyncio's TLS transport reports a peer's close or reset in is_closing()
#: from Python 3.11 on; on 3.10 (where ``start_tls`` on asyncio uses it) it
#: does not, and the checker does not ask.
_TLS_NOTICES_CLOSE: Final = sys.version_info >= (3, 11)

#: How long one scenario may take.
SCENARIO_TIMEOUT: Final = 30.0
#: How long a peer's close or reset may take to be noticed without a read.
NOTICE_TIMEOUT: Final = 5.0


@contextlib.asynccontextmanager
async def connected_pair(
    *, limit: int = DEFAULT_LIMIT, capacity: int = DEFAULT_CAPACITY
) -> AsyncIterator[tuple[ConnectionEnd, ConnectionEnd]]:
    """Two connected ``(reader, writer)`` pairs over in-memory streams.

    ``capacity`` bytes fit in each direction before the sender has to wait,
    so ``drain()`` flow control works as over a socket. Both ends are closed
    on exit. Works on asyncio, uvloop and trio.
    """
    left, right = memory_stream_pair(capacity)
    client = wrap_stream(left, limit=limit)
    server = wrap_stream(right, limit=limit)
    try:
        yield client, server
    finally:
        with anyio.CancelScope(shield=True):
            for _reader, writer in (client, server):
                writer.transport.abort()
                await writer.wait_closed()


# -- the checker ---------------------------------------------------------------


async def check_connection_contract(
    make_pair: PairFactory,
    *,
    scenarios: list[str] | None = None,
    both_ways: bool = True,
) -> list[str]:
    """Check the connection contract over pairs that ``make_pair`` builds.

    Every scenario gets a fresh pair; with ``both_ways`` each runs again with
    the two ends swapped, so that both ends' readers and writers are
    checked. Returns the names of the checks run (``scenario/direction``);
    raises ``AssertionError`` naming the scenario that failed.
    """
    names = list(SCENARIOS) if scenarios is None else scenarios
    run: list[str] = []
    for name in names:
        scenario, limit = SCENARIOS[name]
        directions = ("forward", "reverse") if both_ways else ("forward",)
        for direction in directions:
            label = f"{name}/{direction}"
            async with make_pair(limit) as (first, second):
                near, far = (
                    (first, second) if direction == "forward" else (second, first)
                )
                try:
                    with anyio.fail_after(SCENARIO_TIMEOUT):
                        await scenario(near, far, limit)
                except AssertionError as exc:
                    raise AssertionError(f"{label}: {exc}") from exc
                except TimeoutError as exc:
                    raise AssertionError(f"{label}: timed out") from exc
            run.append(label)
    return run


def _pattern(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (without reading) until ``condition()`` holds."""
    with anyio.move_on_after(NOTICE_TIMEOUT):
        while not condition():
            await anyio.sleep(0.005)
    assert condition(), f"not noticed without a read: {what}"


def _known(reader: StreamReader) -> tuple[int, bool]:
    """What ``reader`` has without a read: bytes buffered, and the peer's EOF.

    Asked after ``exception()``, the public question that shows the peer's
    news: a reader over a pulled socket (trio) takes what the socket has
    when asked, where asyncio's transport reads eagerly.
    """
    reader.exception()
    return len(reader._buffer), reader._core.eof


async def _raised(awaitable: Awaitable[object], kind: type[_E]) -> _E:
    """The ``kind`` exception ``awaitable`` raises (AssertionError if none)."""
    try:
        await awaitable
    except kind as exc:
        return exc
    raise AssertionError(f"{kind.__name__} was not raised")


async def _read_all(reader: StreamReader) -> bytes:
    chunks = []
    while chunk := await reader.read(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _reset(writer: StreamWriter) -> bool:
    """Break ``writer``'s connection with a reset; False if it cannot be done."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False  # Unix sockets have no reset
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return True
    stream = getattr(writer.transport, "_stream", None)
    if isinstance(stream, MemoryByteStream):
        stream.reset()
        return True
    return False


async def _roundtrip(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    reader, writer = near
    far_reader, far_writer = far
    payload = _pattern(300_000, 1)
    writer.write(payload)
    assert await far_reader.readexactly(len(payload)) == payload, "readexactly"
    far_writer.writelines([b"line one\n", b"line ", b"two\n", b"a|b;c", b"\r\n"])
    assert await reader.readline() == b"line one\n", "readline"
    assert await reader.readline() == b"line two\n", "readline across writes"
    assert await reader.readuntil((b";", b"|")) == b"a|", "readuntil, first match"
    assert await reader.readuntil(b"\r\n") == b"b;c\r\n", "readuntil"
    far_writer.write(b"xyz")
    assert await reader.read(2) == b"xy", "read(n)"
    assert await reader.read(100) == b"z", "read(n) returns what is there"
    assert await reader.read(0) == b"", "read(0)"
    await writer.drain()
    await far_writer.drain()


async def _duplex(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    """Both ends send 2 MiB at once, with drain(), while reading."""
    size = 2 * 1024 * 1024
    results: dict[str, bytes] = {}

    async def send(end: ConnectionEnd, seed: int) -> None:
        data = _pattern(size, seed)
        for offset in range(0, size, 50_000):
            end[1].write(data[offset : offset + 50_000])
            await end[1].drain()

    async def receive(end: ConnectionEnd, key: str) -> None:
        results[key] = await end[0].readexactly(size)

    async with anyio.create_task_group() as group:
        group.start_soon(send, near, 2)
        group.start_soon(send, far, 3)
        group.start_soon(receive, near, "near")
        group.start_soon(receive, far, "far")
    assert results["far"] == _pattern(size, 2), "near to far"
    assert results["near"] == _pattern(size, 3), "far to near"


async def _limits(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    reader, _writer = near
    _far_reader, far_writer = far
    far_writer.write(b"x" * (limit + 10) + b"\n" + b"next\n")
    overrun = await _raised(reader.readuntil(b"\n"), LimitOverrunError)
    assert overrun.consumed == limit + 10, f"consumed={overrun.consumed}"
    try:
        await reader.readline()
    except ValueError:
        pass
    else:
        raise AssertionError("readline beyond the limit did not raise ValueError")
    assert await reader.readline() == b"next\n", "the line after an overrun"


async def _flow_control(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    """A peer that does not read pushes back: drain() waits, then delivers all."""
    _reader, writer = near
    far_reader, _far_writer = far
    low, _high = writer.transport.get_write_buffer_limits()
    total = 0
    chunk = b"f" * 65536
    blocked = False
    while total < 64 * 1024 * 1024:
        writer.write(chunk)
        total += len(chunk)
        with anyio.move_on_after(0.05):
            await writer.drain()
            continue
        blocked = True
        # Paused above ``high``; still paused until the buffer is back at ``low``.
        size = writer.transport.get_write_buffer_size()
        assert size > low, f"drain() waited with {size} bytes buffered (low={low})"
        break
    assert blocked, "drain() never waited for a peer that does not read"

    async def consume() -> None:
        assert await far_reader.readexactly(total) == b"f" * total

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await writer.drain()
        assert writer.transport.get_write_buffer_size() <= low, "drain() returned early"


async def _half_close(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    reader, writer = near
    far_reader, far_writer = far
    if not writer.can_write_eof():
        assert writer.get_extra_info("ssl_object") is not None, "only TLS lacks EOF"
        try:
            writer.write_eof()
        except NotImplementedError:
            return
        raise AssertionError("write_eof() over TLS did not raise NotImplementedError")
    writer.write(b"request")
    writer.write_eof()
    assert await far_reader.read() == b"request", "data before the half-close"
    assert far_reader.at_eof(), "EOF after the half-close"
    assert not writer.is_closing(), "a half-closed writer is not closing"
    far_writer.write(b"response")
    far_writer.close()
    assert await reader.read() == b"response", "the other direction still works"
    await far_writer.wait_closed()


async def _close_delivers(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    """write(); close() sends everything, then EOF, without any drain()."""
    _reader, writer = near
    far_reader, _far_writer = far
    payload = _pattern(4 * 1024 * 1024 + 17, 4)
    writer.write(payload)
    writer.close()
    assert writer.is_closing(), "is_closing() after close()"
    received = await _read_all(far_reader)
    assert len(received) == len(payload), f"{len(received)} of {len(payload)} bytes"
    assert received == payload, "bytes differ"
    await writer.wait_closed()
    try:
        await writer.drain()
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("drain() after close() did not raise")
    writer.write(b"dropped")  # after close: silently dropped, as asyncio


async def _close_while_unread(
    near: ConnectionEnd, far: ConnectionEnd, limit: int
) -> None:
    """The peer sends, closes, and leaves before anything is read: every byte
    it sent is still read, then EOF (the close arrives while the reader is
    paused at its ``2 * limit`` threshold)."""
    _reader, writer = near
    far_reader, _far_writer = far
    payload = _pattern(384 * 1024 + 5, 5)
    writer.write(payload)
    writer.close()
    await anyio.sleep(0.3)  # nothing read while the data and the close arrive
    received = await _read_all(far_reader)
    assert len(received) == len(payload), f"{len(received)} of {len(payload)} bytes"
    assert received == payload, "bytes differ"
    assert far_reader.at_eof(), "EOF after the last byte"
    await writer.wait_closed()


async def _drain_right_after_close(
    near: ConnectionEnd, far: ConnectionEnd, limit: int
) -> None:
    _reader, writer = near
    writer.close()
    tls = writer.get_extra_info("ssl_object") is not None
    try:
        await writer.drain()
    except ConnectionResetError:
        pass
    else:
        # asyncio's SSL transport is still sending close_notify at this
        # point: its drain() returns. A plain connection is gone: it raises.
        assert tls, "drain() right after close() did not raise"
    await writer.wait_closed()


async def _abort(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    _reader, writer = near
    far_reader, _far_writer = far
    writer.write(b"maybe")
    writer.transport.abort()
    assert writer.is_closing(), "is_closing() after abort()"
    await writer.wait_closed()
    try:
        data = await _read_all(far_reader)
    except ConnectionResetError:
        data = b""
    assert data in (b"", b"maybe"), f"abort delivered {data!r}"


async def _peer_close_noticed(
    near: ConnectionEnd, far: ConnectionEnd, limit: int
) -> None:
    reader, writer = near
    _far_reader, far_writer = far
    far_writer.write(b"last words")
    far_writer.close()
    await far_writer.wait_closed()
    await _eventually(lambda: _known(reader) == (10, True), "the peer's last bytes")
    assert not reader.at_eof(), "at_eof() with bytes still buffered"
    assert reader.exception() is None, f"exception() {reader.exception()!r}"
    assert await reader.read() == b"last words", "bytes before the close"
    assert reader.at_eof(), "at_eof() after the peer closed"
    tls = writer.get_extra_info("ssl_object") is not None
    if tls and _TLS_NOTICES_CLOSE:
        # asyncio's SSL transport closes when the peer's close_notify arrives.
        await _eventually(writer.is_closing, "TLS connection closing")
    elif tls:
        pass  # Python 3.10's asyncio TLS transport (start_tls) stays "open"
    else:
        assert not writer.is_closing(), "half-open: still writable, as asyncio"
    writer.close()
    await writer.wait_closed()


async def _peer_reset_noticed(
    near: ConnectionEnd, far: ConnectionEnd, limit: int
) -> None:
    reader, writer = near
    _far_reader, far_writer = far
    if not _reset(far_writer):
        return  # this kind of connection has no reset (Unix sockets)
    await _eventually(
        lambda: reader.exception() is not None or reader._core.eof,
        "the peer's reset",
    )
    error = reader.exception()
    assert isinstance(error, ConnectionResetError), f"exception() is {error!r}"
    if _TLS_NOTICES_CLOSE or writer.get_extra_info("ssl_object") is None:
        assert writer.is_closing(), "is_closing() after a reset"
    with anyio.fail_after(5):
        await writer.wait_closed()  # never hangs after a reset
    try:
        await reader.read(10)
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("read() after a reset did not raise")
    try:
        await writer.drain()
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("drain() after a reset did not raise")


async def _vanish_mid_frame(
    near: ConnectionEnd, far: ConnectionEnd, limit: int
) -> None:
    reader, _writer = near
    _far_reader, far_writer = far
    far_writer.write(struct.pack("!I", 1000) + b"half a frame")
    far_writer.close()
    (length,) = struct.unpack("!I", await reader.readexactly(4))
    incomplete = await _raised(reader.readexactly(length), IncompleteReadError)
    assert incomplete.partial == b"half a frame", f"partial={incomplete.partial!r}"
    assert incomplete.expected == 1000, f"expected={incomplete.expected}"
    assert await reader.read() == b"", "nothing after the partial frame"
    await far_writer.wait_closed()


async def _cancelled_reads(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    """A read cancelled at its await consumes nothing."""
    reader, _writer = near
    _far_reader, far_writer = far
    reads: list[Callable[[], Awaitable[bytes]]] = [
        lambda: reader.readexactly(10),
        lambda: reader.readline(),
        lambda: reader.readuntil(b"!"),
    ]
    for read in reads:
        far_writer.write(b"01234")
        with anyio.move_on_after(0.05) as scope:
            await read()
        assert scope.cancelled_caught, "the read finished without its data"
    far_writer.write(b"56789\n!")
    assert await reader.readexactly(10) == b"0123401234", "cancelled readexactly"
    assert await reader.readline() == b"0123456789\n", "cancelled readline"
    assert await reader.readuntil(b"!") == b"!", "cancelled readuntil"


async def _connection_info(near: ConnectionEnd, far: ConnectionEnd, limit: int) -> None:
    reader, writer = near
    _far_reader, far_writer = far
    assert writer.get_extra_info("no such name", "default") == "default"
    sock = writer.get_extra_info("socket")
    if sock is not None:
        assert writer.get_extra_info("peername") == far_writer.get_extra_info(
            "sockname"
        ), "peername is the peer's sockname"
        assert writer.extra(SocketAttribute.raw_socket) is not None
        assert reader.extra(SocketAttribute.family) == sock.family
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            peer_port = writer.get_extra_info("peername")[1]
            assert writer.extra(SocketAttribute.remote_port) == peer_port
            assert reader.extra(SocketAttribute.remote_port) == peer_port
            assert (
                writer.extra(SocketAttribute.local_port)
                == (writer.get_extra_info("sockname")[1])
            )
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        assert far_writer.get_extra_info("ssl_object") is not None, "TLS on one end"
        assert writer.get_extra_info("cipher") == ssl_object.cipher()
        assert writer.extra(TLSAttribute.ssl_object) is ssl_object
        assert writer.extra(TLSAttribute.tls_version) == ssl_object.version()


#: The scenarios by name, with the reader ``limit`` each needs.
SCENARIOS: Final[
    dict[
        str, tuple[Callable[[ConnectionEnd, ConnectionEnd, int], Awaitable[None]], int]
    ]
] = {
    "roundtrip": (_roundtrip, DEFAULT_LIMIT),
    "duplex": (_duplex, DEFAULT_LIMIT),
    "limits": (_limits, 1000),
    "flow-control": (_flow_control, DEFAULT_LIMIT),
    "half-close": (_half_close, DEFAULT_LIMIT),
    "close-delivers": (_close_delivers, DEFAULT_LIMIT),
    "close-while-unread": (_close_while_unread, DEFAULT_LIMIT),
    "drain-after-close": (_drain_right_after_close, DEFAULT_LIMIT),
    "abort": (_abort, DEFAULT_LIMIT),
    "peer-close": (_peer_close_noticed, DEFAULT_LIMIT),
    "peer-reset": (_peer_reset_noticed, DEFAULT_LIMIT),
    "vanish-mid-frame": (_vanish_mid_frame, DEFAULT_LIMIT),
    "cancelled-reads": (_cancelled_reads, DEFAULT_LIMIT),
    "connection-info": (_connection_info, DEFAULT_LIMIT),
}
