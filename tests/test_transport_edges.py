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
import contextlib
import errno
import gc
import itertools
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import anyio.streams.tls
import pytest
from anyio.abc import ByteStream
from backends import running_task_names
from reference import on_asyncio, outcome
from tls_peer import close_during_start_tls, start_tls_with_a_peer

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams._connections import make_pair
from portastreams._reader import DEFAULT_LIMIT
from portastreams._transport import CLIENT_ASKS_AFTER_A_SHORT_RECEIVE
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
        send_eof_error: BaseException | None = None,
        close_error: BaseException | None = None,
    ) -> None:
        self._send_error = send_error
        self._receive_error = receive_error
        self._send_eof_error = send_eof_error
        self._close_error = close_error

    async def send(self, item: bytes) -> None:
        if self._send_error is not None:
            raise self._send_error

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._receive_error is not None:
            raise self._receive_error
        await anyio.sleep_forever()
        raise AssertionError("not reached")

    async def send_eof(self) -> None:
        if self._send_eof_error is not None:
            raise self._send_eof_error

    async def aclose(self) -> None:
        if self._close_error is not None:
            raise self._close_error

    def __repr__(self) -> str:
        return "<FaultyStream>"


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


#: The argument of a call made without one (``write_eof()``).
NO_ARGUMENT = object()


def apply(transport: Any, method: str, argument: Any) -> Any:
    """Call ``transport.method(argument)``: ``None``, or what it raised."""
    call = getattr(transport, method)
    try:
        call() if argument is NO_ARGUMENT else call(argument)
    except Exception as exc:
        return outcome(exc)
    return None


async def asyncio_transport_calls(calls: list[tuple[str, Any]]) -> list[Any]:
    """Each ``(method, argument)`` called on an asyncio socket transport: what it
    raised (class, message), or the bytes the peer then received."""
    left, right = socket.socketpair()
    with left, right:
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, sock=left
        )
        right.setblocking(False)
        results: list[Any] = []
        try:
            for method, argument in calls:
                raised = apply(transport, method, argument)
                if raised is None:
                    await asyncio.sleep(0.05)
                    raised = right.recv(1024)
                results.append(raised)
        finally:
            transport.abort()
    return results


async def portastreams_transport_calls(calls: list[tuple[str, Any]]) -> list[Any]:
    results: list[Any] = []
    async with connected_pair() as (client, server):
        transport = client[1].transport
        for method, argument in calls:
            raised = apply(transport, method, argument)
            if raised is None:
                with contextlib.suppress(ConnectionResetError):  # closed
                    await client[1].drain()
                with anyio.move_on_after(0.05):
                    raised = await server[0].read(1024)
            results.append(raised)
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
    pytest.param(
        [("write", b"last"), ("write_eof", NO_ARGUMENT), ("write", b"more")],
        id="write-after-write-eof",
    ),
    pytest.param(
        [("close", NO_ARGUMENT), ("write_eof", NO_ARGUMENT), ("write", b"x")],
        id="write-eof-after-close",
    ),
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


# -- closing: the graceful close's deadline, failures on the way out -------------


async def test_a_graceful_close_aborts_a_peer_that_never_reads() -> None:
    """A server's graceful close of a connection whose peer never reads (the
    queued bytes can never be sent) gives up a second after its grace period
    and aborts; the task that watches for that is named."""
    left, right = memory_stream_pair(1024)  # nobody reads the right end
    _, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TIMEOUT):
        writer.write(b"x" * 8192)
        writer.transport._close_gracefully(0.1)
        await anyio.sleep(0.05)
        names = running_task_names()
        start = anyio.current_time()
        await writer.wait_closed()
        waited = anyio.current_time() - start
        await right.aclose()
    assert "portastreams graceful close" in names
    assert 0.9 <= waited < 1.6


async def test_a_graceful_close_waits_only_its_grace_period_for_the_peer() -> None:
    """A graceful close shuts down writing, then waits for the peer's EOF no
    longer than the grace period it was given (the peer here reads
    everything but never closes)."""
    left, right = memory_stream_pair(1 << 16)
    _, writer = portastreams.wrap_stream(left)

    async def read_forever() -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                await right.receive()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(read_forever)
            writer.write(b"last words")
            writer.transport._close_gracefully(0.2)
            start = anyio.current_time()
            await writer.wait_closed()
            waited = anyio.current_time() - start
            task_group.cancel_scope.cancel()
        await right.aclose()
    assert 0.15 <= waited < 0.8


def debug_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portastreams"]


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_a_failed_stream_close_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """The stream's own ``aclose()`` failing, in a close or an abort, does not
    fail ``wait_closed()`` nor escape into the event loop (the connection is
    closed regardless); it is logged once, at DEBUG."""
    error = OSError("close failed")
    _, writer = portastreams.wrap_stream(FaultyStream(close_error=error))
    with (
        caplog.at_level(logging.DEBUG, logger="portastreams"),
        anyio.fail_after(TIMEOUT),
    ):
        getattr(writer.transport, how)()
        await writer.wait_closed()
        assert writer.is_closing()
    assert debug_records(caplog) == [f"error while closing <FaultyStream>: {error!r}"]


async def test_a_failed_graceful_shutdown_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A graceful close whose half-close fails (the peer is gone) still
    closes; the failure is logged at DEBUG."""
    error = anyio.BrokenResourceError()
    _, writer = portastreams.wrap_stream(FaultyStream(send_eof_error=error))
    with (
        caplog.at_level(logging.DEBUG, logger="portastreams"),
        anyio.fail_after(TIMEOUT),
    ):
        writer.transport._close_gracefully(1.0)
        await writer.wait_closed()
    assert debug_records(caplog) == [f"graceful close failed: {error!r}"]


class BreakableStream(ByteStream):
    """A byte stream whose sends fail with ``BrokenResourceError`` once
    ``broken``, and wait forever once ``clogged`` (a peer that stopped reading)."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.broken = False
        self.clogged = False

    async def send(self, item: bytes) -> None:
        if self.broken:
            raise anyio.BrokenResourceError
        if self.clogged:
            await anyio.sleep_forever()
        await self._stream.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def test_a_failed_tls_shutdown_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sending ``close_notify`` fails (the peer is gone): the close completes,
    and the failure is logged at DEBUG."""
    left, right = memory_stream_pair(1 << 20)
    breakable = BreakableStream(left)
    _, writer = portastreams.wrap_stream(breakable)
    with (
        caplog.at_level(logging.DEBUG, logger="portastreams"),
        anyio.fail_after(TIMEOUT),
    ):
        peer = await start_tls_with_a_peer(writer, right)
        breakable.broken = True
        writer.close()
        await writer.wait_closed()
        await peer.aclose()
    assert debug_records(caplog) == [
        f"TLS shutdown failed: {anyio.BrokenResourceError()!r}"
    ]


async def test_transport_writes_during_the_handshake_go_out_encrypted() -> None:
    """The writer holds its own writes while ``start_tls()`` runs; a transport
    taken before it does the same: what it is given during the handshake is
    sent over TLS once the handshake is done, in order."""
    left, right = memory_stream_pair(1 << 20)
    _, writer = portastreams.wrap_stream(left)
    transport = writer.transport
    with anyio.fail_after(TIMEOUT):
        sizes: list[int] = []
        async with anyio.create_task_group() as task_group:

            async def write_meanwhile() -> None:
                while writer.transport is transport:  # until start_tls() runs
                    await anyio.lowlevel.checkpoint()
                before = transport.get_write_buffer_size()
                transport.write(b"during ")
                transport.write(b"the handshake\n")
                # Held, and counted in the write buffer meanwhile.
                sizes.append(transport.get_write_buffer_size() - before)

            task_group.start_soon(write_meanwhile)
            peer = await start_tls_with_a_peer(writer, right)
        writer.write(b"after\n")
        received = b""
        while received.count(b"\n") < 2:
            received += await peer.receive()
        await peer.aclose()
        writer.close()
        await writer.wait_closed()
    assert sizes == [len(b"during the handshake\n")]
    assert received == b"during the handshake\nafter\n"


@pytest.mark.parametrize("how", ["writer.close", "transport.abort"])
async def test_closing_while_start_tls_waits_is_connection_lost(how: str) -> None:
    """``close()`` (or the transport's ``abort()``) while ``start_tls()``
    waits for a silent peer: ``start_tls()`` raises
    ``ConnectionResetError('Connection lost')`` at once (see
    docs/porting.rst), and reads end."""
    left, right = memory_stream_pair(1 << 20)  # nobody answers the ClientHello
    reader, writer = portastreams.wrap_stream(left)
    from certificates import client_context

    with anyio.fail_after(TIMEOUT):
        errors = await close_during_start_tls(writer, client_context(), how, after=0.1)
        await writer.wait_closed()
        assert await reader.read() == b""
        await right.aclose()
    assert errors == [repr(ConnectionResetError("Connection lost"))]


WATER_MARKS: list[dict[str, int]] = [
    {},
    {"high": 1001},
    {"low": 1001},
    {"high": 1001, "low": 3},
]


async def test_write_buffer_limits_are_asyncios() -> None:
    """``get_write_buffer_limits()`` gives asyncio's defaults, as integers, and
    asyncio's limits after ``set_write_buffer_limits()`` with one or both."""

    def limits_after(transport: Any) -> list[str]:
        seen = []
        for marks in WATER_MARKS:
            if marks:
                transport.set_write_buffer_limits(**marks)
            seen.append(repr(transport.get_write_buffer_limits()))
        return seen

    async def asyncio_limits() -> list[str]:
        left, right = socket.socketpair()
        with left, right:
            transport, _ = await asyncio.get_running_loop().create_connection(
                asyncio.Protocol, sock=left
            )
            limits = limits_after(transport)
            transport.abort()
        return limits

    expected = await on_asyncio(asyncio_limits)
    async with connected_pair() as (client, _):
        assert limits_after(client[1].transport) == expected


# -- a peer's last words ----------------------------------------------------------------


async def last_words_before_a_reset() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    go = threading.Event()

    def peer() -> None:
        conn, _ = listener.accept()
        go.wait(TIMEOUT)
        conn.sendall(b"ERR going away\n")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        reader, writer = await portastreams.open_connection(
            "127.0.0.1", listener.getsockname()[1]
        )
        go.set()
        # Blocking on purpose: the receiver task gets no chance to read the
        # message before the send below fails.
        time.sleep(0.2)  # noqa: ASYNC251
        writer.write(b"request\n")
        assert await reader.readline() == b"ERR going away\n"
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        writer.close()
        await writer.wait_closed()
    finally:
        thread.join(TIMEOUT)
        listener.close()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_failed_send_keeps_what_the_peer_sent_before_it_left(
    anyio_backend: object,
) -> None:
    """On trio the transport sends straight to the socket. When that send
    fails because the peer reset the connection, what the peer sent before
    (an error message, say) may still be unread in the kernel: it is read
    before the connection is given up, so reads return it before the error.
    (Several rounds: trio runs the receiver or the closing task first at
    random, and only the second order depends on this.)"""
    with anyio.fail_after(TIMEOUT):
        for _ in range(5):
            await last_words_before_a_reset()


# -- reads that pull (trio) ------------------------------------------------------------


@contextlib.asynccontextmanager
async def connected_to_a_blocking_peer() -> AsyncIterator[
    tuple[StreamReader, StreamWriter, socket.socket]
]:
    """A portastreams client connection, and its peer: a blocking socket
    (the whole within ``TIMEOUT``)."""
    with socket.create_server(("127.0.0.1", 0)) as listener, anyio.fail_after(TIMEOUT):
        reader, writer = await portastreams.open_connection(
            "127.0.0.1", listener.getsockname()[1]
        )
        peer, _ = listener.accept()
        with peer:
            yield reader, writer, peer


async def test_bytes_wait_in_a_trio_socket_until_asked_for(backend_name: str) -> None:
    """asyncio's transport reads eagerly: the peer's bytes land in the
    reader's buffer without a read. On trio a client's plain socket's reads
    pull instead; the bytes wait in the socket until something asks --
    ``at_eof()`` here, which then answers as asyncio's (the documented
    difference: only ``_buffer`` shows it)."""
    async with connected_to_a_blocking_peer() as (reader, writer, peer):
        peer.sendall(b"hello\n")
        await anyio.sleep(0.1)
        eager = backend_name != "trio"
        assert len(reader._buffer) == (6 if eager else 0)
        assert not reader.at_eof()
        assert len(reader._buffer) == 6
        peer.close()
        await anyio.sleep(0.1)  # the peer's close has arrived
        assert reader._core.eof is eager
        assert reader.exception() is None
        assert reader._core.eof
        assert await reader.read() == b"hello\n"
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()


async def test_server_connections_read_as_client_connections_do(
    backend_name: str,
) -> None:
    """A server's connections read as its clients' do: eagerly on asyncio,
    pulled on trio, where the client's bytes wait in the socket until the
    handler asks (``at_eof()`` here, or a read)."""
    buffered: list[int] = []

    async def handler(
        reader: portastreams.StreamReader, writer: portastreams.StreamWriter
    ) -> None:
        await anyio.sleep(0.1)  # the client's bytes have arrived
        buffered.append(len(reader._buffer))
        assert not reader.at_eof()
        buffered.append(len(reader._buffer))
        assert await reader.readline() == b"hello\n"
        writer.close()

    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"hello\n")
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
    assert buffered == [0 if backend_name == "trio" else 6, 6]


# -- which streams the transport bypasses -------------------------------------------


class CountingSocketStream(anyio.abc.SocketStream):
    """A user's socket stream: an AnyIO one underneath, every byte counted."""

    def __init__(self, inner: anyio.abc.SocketStream) -> None:
        self.inner = inner
        self.sent = 0
        self.received = 0

    async def send(self, item: bytes) -> None:
        self.sent += len(item)
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        self.received += len(data)
        return data

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def _raw_socket(self) -> socket.socket:
        return self.inner.extra(anyio.abc.SocketAttribute.raw_socket)

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes


async def test_a_users_socket_stream_is_used_not_bypassed() -> None:
    """Only AnyIO's own socket streams are bypassed for their socket (on
    trio); any other stream -- a user's, even one with a socket underneath --
    carries every byte itself."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with multi:
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def echo_once() -> None:
            async with await listener.accept() as peer:
                await peer.send(await peer.receive())

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(echo_once)
            with anyio.fail_after(TIMEOUT):
                inner = await anyio.connect_tcp("127.0.0.1", port)
                stream = CountingSocketStream(inner)
                reader, writer = portastreams.wrap_stream(stream)
                writer.write(b"through the stream")
                await writer.drain()
                assert await reader.readexactly(18) == b"through the stream"
                writer.close()
                await writer.wait_closed()
    assert (stream.sent, stream.received) == (18, 18)


# -- backstops and fairness -------------------------------------------------------------


class StubbornStream(ByteStream):
    """A byte stream whose ``aclose()`` never finishes by itself, and whose
    ``receive()`` ignores cancellation until ``released`` is set."""

    def __init__(self) -> None:
        self.released = anyio.Event()
        self.closes = 0

    async def send(self, item: bytes) -> None:
        pass

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with anyio.CancelScope(shield=True):
            await self.released.wait()
        # As a file-based stream closed under a receive: not a connection
        # error, yet no bug of the connection's either.
        raise ValueError("I/O operation on closed file")

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closes += 1
        await anyio.sleep_forever()


async def test_a_stream_that_never_finishes_closing_is_closed_by_the_backstops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream whose receive ignores cancellation and whose ``aclose()``
    hangs: ``close()`` still completes, after ``CLOSE_TIMEOUT`` for the
    receiver and again for the close, which is then forced (cancelled). The
    receive that fails at last, because the stream was closed under it, is
    no error of the connection's."""
    monkeypatch.setattr(portastreams._transport, "CLOSE_TIMEOUT", 0.2)
    stream = StubbornStream()
    _, writer = portastreams.wrap_stream(stream)
    await anyio.sleep(0.05)  # the receiver waits in receive()
    try:
        with anyio.fail_after(TIMEOUT):
            started = time.monotonic()
            writer.close()
            await writer.wait_closed()
            waited = time.monotonic() - started
    finally:
        stream.released.set()
    await anyio.sleep(0.05)  # the receiver ends
    assert stream.closes == 2  # the graceful aclose(), then the forced one
    assert 0.35 <= waited < 2.0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


class SocketStandIn:
    """Stands in for the socket a trio transport reads and writes directly
    (see :func:`socket_stand_in`): its file descriptor is the real socket
    ``fd_source``'s, so the transport's waits for readability and
    writability work; ``recv_into()`` has nothing (``BlockingIOError``),
    ``send()`` takes everything and counts it in ``sent``. Subclasses change
    what they test; ``recv()`` receives as their ``recv_into()`` does."""

    def __init__(self, fd_source: socket.socket) -> None:
        self.fd_source = fd_source
        self.sent = 0

    def fileno(self) -> int:
        return self.fd_source.fileno()

    def recv_into(self, buffer: memoryview) -> int:
        raise BlockingIOError

    def recv(self, size: int) -> bytes:
        buffer = bytearray(size)
        return bytes(buffer[: self.recv_into(memoryview(buffer))])

    def send(self, data: Any) -> int:
        self.sent += len(data)
        return len(data)

    def shutdown(self, how: int) -> None:
        pass


def socket_stand_in(
    monkeypatch: pytest.MonkeyPatch, fake: SocketStandIn, *, server_side: bool = False
) -> tuple[portastreams.StreamReader, portastreams.StreamWriter]:
    """A connection on trio whose transport uses ``fake`` as its socket (a
    client's, or with ``server_side`` a server's accepted connection)."""
    stream = FaultyStream()
    monkeypatch.setattr(
        portastreams._transport,
        "direct_socket",
        lambda given, backend: fake if given is stream else None,
    )
    if server_side:
        return make_pair(stream, DEFAULT_LIMIT, server_side=True)
    return portastreams.wrap_stream(stream)


class EndlessSocket(SocketStandIn):
    """A socket that always has more to read: ``recv_into()`` fills the whole
    buffer at once, ``receives`` times, then the end of the stream --
    except once, after ``dry_after`` receives, when it has nothing for a
    moment (``BlockingIOError``; ``readable`` is readable). Each receive
    records how often ``ticker`` has run by then."""

    def __init__(
        self,
        receives: int,
        ticker: list[int],
        *,
        dry_after: int,
        readable: socket.socket,
    ) -> None:
        super().__init__(readable)
        self.left = receives
        self.ticker = ticker
        self.dry_after: int | None = dry_after
        self.ticks_seen: list[int] = []

    def recv_into(self, buffer: memoryview) -> int:
        if len(self.ticks_seen) == self.dry_after:
            self.dry_after = None
            raise BlockingIOError
        if not self.left:
            return 0
        self.left -= 1
        self.ticks_seen.append(self.ticker[0])
        buffer[:] = b"x" * len(buffer)
        return len(buffer)


def reading_on(
    mode: str, pair: tuple[portastreams.StreamReader, portastreams.StreamWriter]
) -> tuple[portastreams.StreamReader, portastreams.StreamWriter]:
    """``pair``, whose reads receive themselves ("pulled", the default for a
    plain socket on trio) or are fed by a receiver task ("receiver", as
    after ``start_tls`` or during a graceful close)."""
    if mode == "receiver":
        pair[1].transport._receive_eagerly()
    return pair


#: The two ways a transport on a trio socket receives.
READING_MODES = pytest.mark.parametrize("mode", ["pulled", "receiver"])


@pytest.mark.parametrize("anyio_backend", ["trio"])
@READING_MODES
async def test_a_socket_that_never_runs_dry_does_not_starve_other_tasks(
    anyio_backend: object, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On trio the transport reads its socket directly and feeds each receive
    at once; while the socket always has more, the task that receives (the
    read's own, or the receiver) still yields to other tasks every
    ``MAX_RECEIVES_WITHOUT_YIELD`` receives, counted afresh after the socket
    ran dry (the wait for it was a yield)."""
    from portastreams._transport import MAX_RECEIVES_WITHOUT_YIELD as MAX

    ticker = [0]
    dry_after = 2 * MAX + MAX // 2
    readable, other_end = socket.socketpair()
    other_end.send(b"!")
    fake = EndlessSocket(20 * MAX, ticker, dry_after=dry_after, readable=readable)

    import trio

    yielded_after: list[int] = []
    checkpoint = trio.lowlevel.checkpoint
    shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint

    reading = [False]

    def record() -> None:
        if reading[0] and trio.lowlevel.current_task().name != ticker_name:
            yielded_after.append(len(fake.ticks_seen))

    async def recorded_checkpoint() -> None:
        record()
        await checkpoint()

    async def recorded_shielded_checkpoint() -> None:
        record()
        await shielded_checkpoint()

    async def tick() -> None:
        while True:
            ticker[0] += 1
            await checkpoint()

    ticker_name = "ticker"
    monkeypatch.setattr(trio.lowlevel, "checkpoint", recorded_checkpoint)
    monkeypatch.setattr(
        trio.lowlevel, "cancel_shielded_checkpoint", recorded_shielded_checkpoint
    )
    # A receive buffer of one byte: every receive is a full one.
    one_byte = memoryview(bytearray(1))
    monkeypatch.setattr(
        portastreams._transport, "thread_receive_view", lambda size: one_byte
    )

    with readable, other_end, anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(tick, name=ticker_name)
            await checkpoint()
            reader, writer = reading_on(mode, socket_stand_in(monkeypatch, fake))
            reading[0] = True
            assert len(await reader.read()) == 20 * MAX
            reading[0] = False
            task_group.cancel_scope.cancel()
        writer.close()
        await writer.wait_closed()
    # Where the receiving task yielded:
    after_dry = range(dry_after + MAX, len(fake.ticks_seen) + 1, MAX)
    assert yielded_after == [MAX, 2 * MAX, *after_dry]
    # and so the other task ran in between (trio may run it just before the
    # receiving task in one batch and just after it in the next: twice as many).
    runs = [len(list(run)) for _, run in itertools.groupby(fake.ticks_seen)]
    assert max(runs) <= 2 * MAX


class ShortReceivesSocket(SocketStandIn):
    """A socket that gets a few bytes at a time: each ``recv_into()`` takes what
    the other end sent to the real socket behind it (short receives), and
    refusing one raises ``BlockingIOError``, as a socket does; ``refused``
    counts the refusals."""

    def __init__(self, real: socket.socket) -> None:
        super().__init__(real)
        real.setblocking(False)
        self.refused = 0

    def recv_into(self, buffer: memoryview) -> int:
        try:
            return self.fd_source.recv_into(buffer)
        except BlockingIOError:
            self.refused += 1
            raise


@pytest.mark.parametrize("anyio_backend", ["trio"])
@READING_MODES
async def test_after_a_short_receive_the_transport_waits_before_asking_again(
    anyio_backend: object, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receive shorter than asked for means the socket has probably run dry.
    The receiver then waits until it is readable instead of calling
    ``recv()`` again to be refused (the exception is the costliest step of
    a request/response turn on one CPU); a pulled read yields first (see
    the next test). Either way, a message already there is never refused,
    and nothing is missed: each message is read whole."""
    real, other_end = socket.socketpair()
    fake = ShortReceivesSocket(real)
    with real, other_end, anyio.fail_after(TIMEOUT):
        reader, writer = reading_on(mode, socket_stand_in(monkeypatch, fake))
        for message in (b"ping\n", b"pong\n", b"last\n"):
            other_end.send(message)
            assert await reader.readline() == message
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
        other_end.shutdown(socket.SHUT_WR)
        assert await reader.read() == b""
        assert fake.refused == 0
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("side", ["client", "server"])
async def test_after_a_short_receive_a_pulled_read_yields_before_asking(
    anyio_backend: object, side: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a short receive, the next pulled read lets other tasks run (the
    peer too, on another CPU) before it asks the socket, and sleeps on the
    socket only once refused: between two CPUs the answer has often come by
    then, and the sleep and wake-up it spares are the costliest part of a
    request/response turn. A client asks up to three times so, a yield
    before each; a server connection once (its handlers give each other
    those turns). The last refusal is followed by a wait for readability."""
    import trio

    real, other_end = socket.socketpair()
    fake = ShortReceivesSocket(real)
    events: list[str] = []  # while a readline() runs
    reading = [False]
    receive = fake.recv_into
    shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint

    def recorded_recv_into(buffer: memoryview) -> int:
        try:
            received = receive(buffer)
        except BlockingIOError:
            events.append("refused")
            raise
        events.append("received")
        return received

    async def recorded_shielded_checkpoint() -> None:
        if reading[0]:
            events.append("yield")
        await shielded_checkpoint()

    async def readline() -> bytes:
        events.clear()
        reading[0] = True
        try:
            return await reader.readline()
        finally:
            reading[0] = False

    async def answer_later() -> None:
        await trio.sleep(0.05)
        other_end.send(b"three\n")

    fake.recv_into = recorded_recv_into  # type: ignore[method-assign]
    monkeypatch.setattr(
        trio.lowlevel, "cancel_shielded_checkpoint", recorded_shielded_checkpoint
    )
    with real, other_end, anyio.fail_after(TIMEOUT):
        reader, writer = socket_stand_in(
            monkeypatch, fake, server_side=side == "server"
        )
        other_end.send(b"one\n")
        assert await readline() == b"one\n"
        assert events == ["received"]  # asked at once
        other_end.send(b"two\n")
        assert await readline() == b"two\n"
        assert events == ["yield", "received"]  # after a short receive
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(answer_later)
            assert await readline() == b"three\n"
        # Yields and refusals, a wait for readability, the answer.
        asks = CLIENT_ASKS_AFTER_A_SHORT_RECEIVE if side == "client" else 1
        assert events == ["yield", "refused"] * asks + ["received"]
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("news", ["set_exception", "feed_eof", "feed_data"])
async def test_news_between_two_asks_wakes_a_pulled_read(
    anyio_backend: object, news: str
) -> None:
    """After a short receive a pulled read yields before it asks the socket
    again (see above). News for the reader in that moment, from another task
    (``set_exception()``, ``feed_eof()``, ``feed_data()``), must wake it as
    it wakes a read waiting on the socket, as asyncio's would be: the read
    must not go on to wait for the socket's next bytes."""
    real, other_end = socket.socketpair()
    with other_end, anyio.fail_after(TIMEOUT):
        stream = await anyio.abc.SocketStream.from_socket(real)
        reader, writer = portastreams.wrap_stream(stream)
        transport = writer.transport
        other_end.send(b"ping\n")
        assert await reader.readline() == b"ping\n"  # a short receive
        outcome: list[object] = []

        async def readline() -> None:
            try:
                outcome.append(await reader.readline())
            except ConnectionResetError as exc:
                outcome.append(exc)

        error = ConnectionResetError("given")
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(readline)
            while reader._waiter is None:
                await anyio.lowlevel.checkpoint()
            assert not transport._pull_parked  # between two asks
            if news == "set_exception":
                reader.set_exception(error)
            elif news == "feed_eof":
                reader.feed_eof()
            else:
                reader.feed_data(b"fed\n")
            with anyio.fail_after(1):  # not until the peer sends
                while not outcome:
                    await anyio.lowlevel.checkpoint()
        expected = {"set_exception": error, "feed_eof": b"", "feed_data": b"fed\n"}
        assert outcome == [expected[news]]
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize(
    ("read", "frames"),
    [("readline", 4), ("readuntil", 4), ("readexactly", 3), ("read", 3)],
)
async def test_an_idle_pulled_read_waits_through_few_frames(
    anyio_backend: object, read: str, frames: int
) -> None:
    """An idle trio connection's read waits on the socket itself, and every
    coroutine frame between the read and trio's ``wait_readable()`` stays
    alive as long as it waits: on a server, on every idle connection. So the
    reads keep their waits inline: ``readline()`` and ``readuntil()`` wait
    through four frames of ours (the read, its search loop, the wait, the
    pull), ``readexactly()`` and ``read()`` through three."""
    real, other_end = socket.socketpair()
    with other_end, anyio.fail_after(TIMEOUT):
        stream = await anyio.abc.SocketStream.from_socket(real)
        reader, writer = portastreams.wrap_stream(stream)
        other_end.send(b"ping\n")
        assert await reader.readline() == b"ping\n"
        reads: dict[str, Callable[[], Coroutine[Any, Any, bytes]]] = {
            "readline": reader.readline,
            "readuntil": lambda: reader.readuntil(b"\r\n"),
            "readexactly": lambda: reader.readexactly(4),
            "read": lambda: reader.read(100),
        }
        coroutine = reads[read]()

        async def wait() -> None:
            await coroutine

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait)
            while not writer.transport._pull_parked:
                await anyio.lowlevel.checkpoint()
            chain = []
            awaited: Any = coroutine
            while hasattr(awaited, "cr_code"):
                # (Mutation testing renames each function it mutates,
                # "xǁClassǁname__mutmut_N": the count holds for those too.)
                name = awaited.cr_code.co_name.split("ǁ")[-1].split("__mutmut_")[0]
                chain.append((awaited.cr_code.co_filename, name))
                awaited = awaited.cr_await
            package = os.path.dirname(portastreams.__file__) + os.sep
            ours = [name for path, name in chain if path.startswith(package)]
            assert ours[0] == read
            assert ours[-1] == "_pull"
            assert len(ours) == frames, ours
            task_group.cancel_scope.cancel()
        writer.close()
        await writer.wait_closed()


def test_questions_outside_the_event_loop_look_at_nothing() -> None:
    """A pulled connection asked after its trio run ended (a writer that is
    collected later, in whatever event loop) does not touch the socket: a
    reset waiting there would fail the connection, which needs the run."""
    import trio

    async def connect(
        port: int,
    ) -> tuple[portastreams.StreamReader, portastreams.StreamWriter]:
        return await portastreams.open_connection("127.0.0.1", port)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        reader, writer = trio.run(connect, listener.getsockname()[1])
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset, waiting in the socket
        time.sleep(0.05)
        assert not writer.is_closing()
        assert not reader.at_eof()
        assert reader.exception() is None
        writer.get_extra_info("socket").close()
        del reader, writer
        with pytest.warns(ResourceWarning):
            gc.collect()  # the writer, unclosed


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_questions_leave_the_socket_to_a_read_that_waits_on_it(
    anyio_backend: object,
) -> None:
    """While a read waits on the socket (pulled), ``at_eof()`` and friends
    do not receive themselves: the read takes what arrives."""
    async with connected_to_a_blocking_peer() as (reader, writer, peer):
        async with anyio.create_task_group() as task_group:
            lines: list[bytes] = []

            async def read() -> None:
                lines.append(await reader.readline())

            task_group.start_soon(read)
            await anyio.sleep(0.05)  # the read waits on the socket
            peer.sendall(b"hello\n")
            # Blocking on purpose: the bytes arrive, the read cannot run.
            time.sleep(0.05)  # noqa: ASYNC251
            assert not reader.at_eof()
            assert reader.exception() is None
            assert not writer.is_closing()
            assert len(reader._buffer) == 0
        assert lines == [b"hello\n"]
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_socket_closed_under_a_waiting_flusher_fails_the_connection(
    anyio_backend: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A flusher that waits for room takes a ``ClosedResourceError`` for the
    spurious wake-up of a pulled read's interruption -- unless the socket
    was really closed under it (as trio's own close does it): then the
    connection fails, quietly, with a connection error."""
    import trio

    with caplog.at_level(logging.ERROR):
        async with connected_to_a_blocking_peer() as (_reader, writer, _peer):
            writer.write(b"w" * (8 * 1024 * 1024))  # the peer never reads
            await anyio.sleep(0.05)  # the flusher waits for room
            sock = writer.get_extra_info("socket")
            trio.lowlevel.notify_closing(sock)
            sock.close()
            with pytest.raises(ConnectionError):
                await writer.drain()
            await writer.wait_closed()
    assert [r for r in caplog.records if r.name == "portastreams"] == []


class RecordingSocket(SocketStandIn):
    """The real socket's receives, each recorded in ``calls`` as
    ``(method, size asked for, bytes returned)``."""

    def __init__(self, real: socket.socket) -> None:
        super().__init__(real)
        real.setblocking(False)
        self.calls: list[tuple[str, int, int]] = []

    def recv(self, size: int) -> bytes:
        data = self.fd_source.recv(size)
        self.calls.append(("recv", size, len(data)))
        return data

    def recv_into(self, buffer: memoryview) -> int:
        received = self.fd_source.recv_into(buffer)
        self.calls.append(("recv_into", len(buffer), received))
        return received


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_large_read_on_an_empty_buffer_takes_the_receive_itself(
    anyio_backend: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read(n)`` with nothing buffered and ``n`` at least a receive's worth
    (64 KiB) returns what one ``recv(n)`` gave, never copied through the
    reader's buffer, as trio's ``receive_some(n)`` would; a smaller read
    receives a whole chunk, whose rest the reader keeps for the next reads.
    The peer's EOF still ends the stream."""
    from portastreams._reader import MAX_RECEIVE_SIZE

    real, other_end = socket.socketpair()
    fake = RecordingSocket(real)
    payload = bytes(range(256)) * 100  # 25,600 bytes
    with real, other_end, anyio.fail_after(TIMEOUT):
        reader, writer = socket_stand_in(monkeypatch, fake)
        other_end.sendall(payload)
        assert await reader.read(100_000) == payload
        assert fake.calls == [("recv", 100_000, len(payload))]
        assert not reader._buffer
        other_end.sendall(payload)
        assert await reader.read(100) == payload[:100]
        assert fake.calls[1:] == [("recv", MAX_RECEIVE_SIZE, len(payload))]
        assert await reader.read(100_000) == payload[100:]  # from the buffer
        other_end.shutdown(socket.SHUT_WR)
        assert await reader.read(100_000) == b""
        assert reader.at_eof()
        assert fake.calls[-1] == ("recv", 100_000, 0)
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("chunk_size", [1000, 4096, 65535])
async def test_drain_yields_once_per_64_kib_the_socket_took_at_once(
    anyio_backend: object, chunk_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On trio ``write()`` hands data straight to the socket; when the socket
    keeps taking everything, ``drain()`` never has to wait, and a
    ``write()``/``drain()`` loop would starve every other task. So ``drain()``
    is a checkpoint (it yields, and raises a pending cancellation) each time
    the socket has taken ``SENT_WITHOUT_YIELD`` bytes since, as trio's
    ``send_all()`` would have been; small writes (a request/response turn)
    cost no task switch, as asyncio's."""
    from portastreams._transport import SENT_WITHOUT_YIELD

    real, other_end = socket.socketpair()
    fake = SocketStandIn(real)
    with real, other_end, anyio.fail_after(TIMEOUT):
        _, writer = socket_stand_in(monkeypatch, fake)
        chunk = b"x" * chunk_size
        yielded_after = []
        for number in range(1, 3 * SENT_WITHOUT_YIELD // len(chunk) + 1):
            writer.write(chunk)
            # A drain() that yields is a checkpoint: it raises the pending
            # cancellation.
            with anyio.CancelScope() as scope:
                scope.cancel()
                await writer.drain()
            if scope.cancelled_caught:
                yielded_after.append(number * len(chunk))
        assert fake.sent == 3 * SENT_WITHOUT_YIELD // len(chunk) * len(chunk)
        # The first drain() at or past each mark (4,096-byte chunks reach
        # it exactly, one 65,535-byte chunk one byte short).
        step = -(-SENT_WITHOUT_YIELD // len(chunk)) * len(chunk)
        assert yielded_after == list(range(step, fake.sent + 1, step))
        writer.close()
        await writer.wait_closed()


# -- TLS messages after the handshake ---------------------------------------------------


async def test_a_post_handshake_certificate_request_is_answered_at_once() -> None:
    """A TLS 1.3 server asks for the client's certificate after the handshake
    (post-handshake authentication): the client's TLS layer answers as soon
    as the request arrives, while the program only reads -- a server that
    waits for the certificate before it answers is not left waiting."""
    import ssl

    from certificates import test_ca

    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca().issue_cert("localhost").configure_cert(server)
    test_ca().configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    server.post_handshake_auth = True
    client = ssl.create_default_context()
    test_ca().configure_trust(client)
    test_ca().issue_cert("client@example.org").configure_cert(client)
    client.post_handshake_auth = True

    left, right = memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TIMEOUT):
        peer = await start_tls_with_a_peer(writer, right, client=client, server=server)
        peer_ssl = peer._ssl_object
        assert peer_ssl.getpeercert() is None
        peer_ssl.verify_client_post_handshake()
        await peer.send(b"who are you?\n")  # with the certificate request
        async with anyio.create_task_group() as task_group:
            # The peer reads (and so processes the client's answer) meanwhile.
            task_group.start_soon(peer.receive)
            assert await reader.readline() == b"who are you?\n"
            while (certificate := peer_ssl.getpeercert()) is None:
                await anyio.sleep(0.01)
            await peer.send(b"welcome\n")
            assert await reader.readline() == b"welcome\n"
            task_group.cancel_scope.cancel()
        writer.transport.abort()
        await writer.wait_closed()
    assert certificate is not None
    assert certificate["subjectAltName"] == (("email", "client@example.org"),)


async def test_a_failure_to_encrypt_what_waited_for_the_handshake_fails_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What was written during the handshake is encrypted once it is done;
    should the TLS library refuse (a broken SSL object), the connection fails
    with its error: reads raise it and the writer is closing."""
    import ssl

    from anyio.streams.tls import TLSStream
    from certificates import client_context, server_context

    from portastreams._tls import TLSSession

    error = ssl.SSLError("the SSL object broke")

    def refuse(self: TLSSession, data: object) -> bytes:
        raise error

    left, right = memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    transport = writer.transport

    async def write_meanwhile() -> None:
        while writer.transport is transport:  # until start_tls() runs
            await anyio.lowlevel.checkpoint()
        transport.write(b"during the handshake\n")
        monkeypatch.setattr(TLSSession, "encrypt", refuse)

    async def serve_tls() -> None:
        # The client's last handshake message is dropped with the connection.
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            await TLSStream.wrap(right, server_side=True, ssl_context=server_context())

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(write_meanwhile)
            task_group.start_soon(serve_tls)
            await writer.start_tls(client_context(), server_hostname="localhost")
        with pytest.raises(ssl.SSLError) as raised:
            await reader.read()
        assert writer.is_closing()
        await writer.wait_closed()
    assert raised.value is error


async def test_a_failure_to_encrypt_a_write_fails_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the handshake, ``write()`` encrypts at once; should the TLS
    library refuse, the connection fails with its error: reads raise it and
    the writer is closing."""
    import ssl

    from portastreams._tls import TLSSession

    error = ssl.SSLError("the SSL object broke")

    def refuse(self: TLSSession, data: object) -> bytes:
        raise error

    left, right = memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TIMEOUT):
        peer = await start_tls_with_a_peer(writer, right)
        monkeypatch.setattr(TLSSession, "encrypt", refuse)
        writer.write(b"never encrypted")
        with pytest.raises(ssl.SSLError) as raised:
            await reader.read()
        assert writer.is_closing()
        await writer.wait_closed()
        await peer.aclose()
    assert raised.value is error


class ResetAtShutdownSocket(SocketStandIn):
    """A socket whose ``shutdown()`` fails: the peer reset the connection."""

    error = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def shutdown(self, how: int) -> None:
        raise self.error


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_write_eof_the_socket_refuses_fails_the_connection(
    anyio_backend: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On trio ``write_eof()`` shuts the socket's write direction at once when
    nothing is queued; if the socket says the connection is gone, that is
    the connection's error: reads raise it."""
    real, other_end = socket.socketpair()
    fake = ResetAtShutdownSocket(real)
    with real, other_end, anyio.fail_after(TIMEOUT):
        reader, writer = socket_stand_in(monkeypatch, fake)
        writer.write_eof()
        with pytest.raises(ConnectionResetError) as raised:
            await reader.read()
        assert writer.is_closing()
        await writer.wait_closed()
    assert raised.value is fake.error


# -- the program's own flow control, and failures one after another ---------------------


async def test_the_program_may_pause_and_resume_reading_at_any_step() -> None:
    """``transport.pause_reading()`` and ``resume_reading()`` from the program,
    as asyncio allows: with the receiver waiting or not, once or twice in a
    row; the data keeps flowing afterwards, in order."""
    left, right = memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    transport = writer.transport
    with anyio.fail_after(TIMEOUT):
        transport.resume_reading()  # not paused: nothing to do
        transport.pause_reading()
        transport.resume_reading()  # before the receiver saw the pause
        transport.pause_reading()
        await right.send(b"one\n")
        await anyio.sleep(0.05)  # the receiver waits for the resume
        assert not transport.is_reading()
        transport.resume_reading()
        transport.pause_reading()
        transport.resume_reading()  # again before the receiver saw it
        await right.send(b"two\n")
        assert await reader.readline() == b"one\n"
        assert await reader.readline() == b"two\n"
        assert transport.is_reading()
        writer.close()
        await writer.wait_closed()


async def test_the_first_failure_is_the_connections_error() -> None:
    """A second failure while the first one closes the connection (a send
    failing after the receive did) does not replace it: reads raise the
    first."""
    first, second = ConnectionResetError("first"), BrokenPipeError("second")
    left, _ = memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    transport = writer.transport
    with anyio.fail_after(TIMEOUT):
        transport._lose_connection(first)
        transport._lose_connection(second)
        with pytest.raises(ConnectionResetError) as raised:
            await reader.read()
        await writer.wait_closed()
    assert raised.value is first
    assert reader.exception() is first


class RefusingSocket(SocketStandIn):
    """A socket that is writable by its file descriptor but refuses every
    other ``send()`` with ``BlockingIOError`` (a wake-up that came before the
    room did), and takes at most ``most`` bytes of the others."""

    def __init__(self, fd_source: socket.socket, most: int) -> None:
        super().__init__(fd_source)
        self.most = most
        self.received = bytearray()
        self.calls = 0

    def send(self, data: Any) -> int:
        self.calls += 1
        if self.calls % 2:
            raise BlockingIOError
        taken = bytes(data[: self.most])
        self.received += taken
        return len(taken)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_sends_the_socket_refuses_are_retried(
    anyio_backend: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On trio the transport sends on its socket directly; a send refused
    right after the socket was reported writable is tried again, and every
    byte arrives once, in order."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        fake = RefusingSocket(ours, most=100_000)
        data = [bytes([i]) * (i * 9_973) for i in range(1, 40)]
        with anyio.fail_after(TIMEOUT):
            _, writer = socket_stand_in(monkeypatch, fake)
            for item in data:
                writer.write(item)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
    assert fake.received == b"".join(data)


async def test_a_peer_that_stops_reading_cannot_hold_up_a_tls_close() -> None:
    """The peer stops reading just when ``close_notify`` is to be sent: the
    close gives up after ``ssl_shutdown_timeout`` and completes."""
    left, right = memory_stream_pair(1 << 20)
    clogging = BreakableStream(left)
    _, writer = portastreams.wrap_stream(clogging)
    with anyio.fail_after(TIMEOUT):
        peer = await start_tls_with_a_peer(writer, right, ssl_shutdown_timeout=0.2)
        clogging.clogged = True
        started = time.monotonic()
        writer.close()
        await writer.wait_closed()
        waited = time.monotonic() - started
        await peer.aclose()
    assert 0.15 <= waited < 2.0


async def test_a_tls_close_after_the_peers_close_notify_does_not_wait() -> None:
    """The peer sends ``close_notify`` and keeps the connection: the reader
    sees EOF, and the connection closes at once (it answers with its own
    ``close_notify``) instead of waiting for the peer's end of stream."""
    left, right = memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TIMEOUT):
        peer = await start_tls_with_a_peer(writer, right, standard_compatible=True)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(peer.unwrap)  # close_notify; waits for ours
            assert await reader.read() == b""
            started = time.monotonic()
            await writer.wait_closed()
            waited = time.monotonic() - started
        await right.aclose()
    assert waited < 2.0


async def receive_to_the_end(stream: ByteStream) -> bytes:
    """Everything ``stream`` receives until its end."""
    received = b""
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            received += await stream.receive()
    return received


async def test_a_cancelled_start_tls_leaves_the_connection_closed() -> None:
    """``start_tls()`` cancelled while it waits for the handshake: the
    connection is closed by the time the cancellation reaches the caller --
    reads end at once, and the peer sees the end of the stream."""
    left, right = memory_stream_pair(1 << 20)  # nobody answers the ClientHello
    reader, writer = portastreams.wrap_stream(left)
    from certificates import client_context

    with anyio.fail_after(TIMEOUT):
        with anyio.move_on_after(0.1) as scope:
            await writer.start_tls(client_context(), server_hostname="localhost")
        assert scope.cancelled_caught
        assert writer.is_closing()
        assert reader.at_eof()
        received = await receive_to_the_end(right)
    assert received.startswith(b"\x16\x03")  # the ClientHello, then the end


async def test_plain_bytes_still_queued_go_out_before_the_handshake() -> None:
    """``start_tls()`` right after a ``write()`` that a slow stream has not
    taken yet: those plain bytes are sent first, then the handshake."""
    left, right = memory_stream_pair(16)  # 16 bytes at a time
    _, writer = portastreams.wrap_stream(left)
    plain = b"plain text, before TLS\n"
    writer.write(plain)

    async def peer() -> Any:
        received = b""
        while len(received) < len(plain):
            received += await right.receive(len(plain) - len(received))
        assert received == plain
        return await anyio.streams.tls.TLSStream.wrap(
            right,
            server_side=True,
            ssl_context=server_context(),
            standard_compatible=False,
        )

    from certificates import client_context, server_context

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            peers: list[Any] = []

            async def serve() -> None:
                peers.append(await peer())

            task_group.start_soon(serve)
            await writer.start_tls(client_context(), server_hostname="localhost")
        writer.write(b"secret\n")
        assert await peers[0].receive() == b"secret\n"
        writer.transport.abort()
        await writer.wait_closed()


async def test_a_transport_write_after_close_is_not_sent() -> None:
    """``transport.write()`` after ``transport.close()`` is dropped, as
    asyncio's transports drop it; what came before is delivered."""
    left, right = memory_stream_pair(1 << 20)
    _, writer = portastreams.wrap_stream(left)
    transport = writer.transport
    with anyio.fail_after(TIMEOUT):
        transport.write(b"before")
        transport.close()
        transport.write(b" after")
        received = await receive_to_the_end(right)
        await writer.wait_closed()
    assert received == b"before"


async def test_a_failure_reported_after_the_close_changes_nothing() -> None:
    """A failure that reaches a transport already closed (a late report from
    a stream) is ignored: the connection stays closed, the stream is not
    closed again, and the reader keeps its clean end."""
    stream = FaultyStream()
    closes = 0
    original_aclose = stream.aclose

    async def counting_aclose() -> None:
        nonlocal closes
        closes += 1
        await original_aclose()

    stream.aclose = counting_aclose  # type: ignore[method-assign]
    reader, writer = portastreams.wrap_stream(stream)
    with anyio.fail_after(TIMEOUT):
        writer.close()
        await writer.wait_closed()
        writer.transport._lose_connection(ConnectionResetError("late"))
        await anyio.sleep(0.05)
        await writer.wait_closed()
    assert closes == 1
    assert writer.is_closing()
    assert reader.exception() is None
    assert reader.at_eof()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("receiver_waits", ["on the socket", "paused"])
async def test_a_close_stops_a_socket_receiver_wherever_it_waits(
    anyio_backend: object, receiver_waits: str
) -> None:
    """A receiver on a trio socket has no cancel scope: the close wakes it
    where it waits -- on the socket (``notify_closing()``), or paused with
    the reader full (its event) -- and it ends there, reading nothing more.
    The close takes far less than the close timeout, and the receiver task
    is gone after it."""
    async with connected_to_a_blocking_peer() as (reader, writer, peer):
        reader._limit = 4
        reader, writer = reading_on("receiver", (reader, writer))
        transport = writer.transport
        if receiver_waits == "paused":
            peer.sendall(b"x" * 100)  # over 2 * limit: the reader pauses it
            while not transport._read_paused:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)  # the receiver waits by now
        assert transport._receiving
        with anyio.fail_after(2.0):  # the close timeout is 30 s
            writer.close()
            await writer.wait_closed()
        assert not transport._receiving
        assert "portastreams receiver" not in running_task_names()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_pulled_read_handed_to_the_receiver_meanwhile_adds_nothing(
    anyio_backend: object,
) -> None:
    """``wait_closed()`` hands reading to a receiver task while a pulled
    ``readline()`` waits on the socket: the read then waits to be fed, and
    returns the peer's line; what follows is the peer's bytes and EOF,
    nothing more."""
    real, other_end = socket.socketpair()
    with other_end, anyio.fail_after(TIMEOUT):
        stream = await anyio.abc.SocketStream.from_socket(real)
        reader, writer = portastreams.wrap_stream(stream)
        lines: list[bytes] = []

        async def read_line() -> None:
            lines.append(await reader.readline())

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(read_line)
            while not writer.transport._pull_parked:
                await anyio.lowlevel.checkpoint()
            task_group.start_soon(writer.wait_closed)
            while reader._puller is not None:
                await anyio.lowlevel.checkpoint()
            other_end.sendall(b"hello\nworld")
            other_end.shutdown(socket.SHUT_WR)
            while not lines:
                await anyio.lowlevel.checkpoint()
            assert lines == [b"hello\n"]
            assert await reader.read() == b"world"
            assert reader.at_eof()
            writer.close()
