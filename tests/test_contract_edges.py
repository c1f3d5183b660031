"""Edges of the stream contract where planted bugs went unnoticed, compared with CPython.

Each scenario is written once against "a streams module" and run twice: on
CPython's own ``asyncio`` streams (in a worker thread, see ``reference.py``)
and on ``portastreams`` under the test's backend; the outcomes must be equal.
The peer is a plain socket the test controls (it can stop reading, close or
reset). ``side`` says which end of the connection portastreams plays: the
client (``open_connection``) or a server's handler (``start_server``) -- two
different paths on asyncio.

The scenarios: flow control exactly at the high-water mark, the errors
``drain()`` raises after a failed send, ``aclose()`` returning only once the
socket is closed, a second concurrent ``read()`` rejected, a connection
error raised on every read (not once), a finished connection not kept
alive by its server, ``ssl_handshake_timeout=0`` rejected, and a server that
keeps accepting after an accept error (file descriptors exhausted).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import socket
import ssl
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import anyio.abc
import pytest
import trustme
from reference import on_asyncio

import portastreams

pytestmark = pytest.mark.anyio

Side = Literal["client", "server"]
SIDES = ["client", "server"]
#: ``asyncio`` or ``portastreams``: both have the same stream functions.
Streams = Any
Outcome = tuple[object, ...]

#: Small socket buffers, so that a peer that does not read clogs quickly.
SMALL_BUFFER = 32 * 1024


def describe(exc: BaseException | None) -> Outcome:
    """An exception (or None) as a comparable value: class name and message."""
    if exc is None:
        return ("no exception",)
    return (type(exc).__name__, str(exc))


async def outcome_of(call: Awaitable[object]) -> Outcome:
    try:
        result = await call
    except Exception as exc:
        return describe(exc)
    return ("result", result)


@asynccontextmanager
async def connected(
    streams: Streams, side: Side, *, small_buffers: bool = False
) -> AsyncIterator[tuple[Any, Any, socket.socket]]:
    """``(reader, writer, peer)``: a connection from ``streams`` and its plain-socket peer."""
    if side == "client":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            if small_buffers:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            port = listener.getsockname()[1]
            reader, writer = await streams.open_connection("127.0.0.1", port)
            peer, _ = listener.accept()  # already connected: does not block
        try:
            if small_buffers:
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER
                )
            yield reader, writer, peer
        finally:
            writer.transport.abort()
            peer.close()
            # asyncio's wait_closed() raises the connection's error, if any.
            with anyio.move_on_after(5, shield=True), contextlib.suppress(OSError):
                await writer.wait_closed()
        return

    handed: list[tuple[Any, Any]] = []
    arrived = anyio.Event()
    finished = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        handed.append((reader, writer))
        arrived.set()
        await finished.wait()
        writer.transport.abort()

    server = await streams.start_server(handler, "127.0.0.1", 0)
    async with server:
        peer = socket.socket()
        try:
            if small_buffers:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            peer.connect(server.sockets[0].getsockname())
            with anyio.fail_after(5):
                await arrived.wait()
            reader, writer = handed[0]
            if small_buffers:
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER
                )
            yield reader, writer, peer
        finally:
            finished.set()
            peer.close()


async def both(
    scenario: Callable[[Streams], Awaitable[Outcome]],
) -> tuple[Outcome, Outcome]:
    """``(portastreams' outcome, CPython asyncio's outcome)`` of one scenario."""

    async def on_cpython() -> Outcome:
        return await scenario(asyncio)

    expected = await on_asyncio(on_cpython)
    actual = await scenario(portastreams)
    return actual, expected


# -- flow control at exactly the high-water mark -------------------------------


async def drains_promptly(writer: Any) -> bool:
    """True if ``drain()`` returns within half a second (the peer reads nothing)."""
    with anyio.move_on_after(0.5) as scope:
        await writer.drain()
    return not scope.cancelled_caught


async def clog(writer: Any) -> int:
    """Fill the socket buffers without pausing; return the stable buffered size."""
    transport = writer.transport
    transport.set_write_buffer_limits(high=64 * 1024 * 1024)
    chunk = bytes(64 * 1024)
    with anyio.fail_after(10):
        while transport.get_write_buffer_size() == 0:
            writer.write(chunk)
            await anyio.sleep(0.01)
        size = -1
        while transport.get_write_buffer_size() != size:
            size = transport.get_write_buffer_size()
            await anyio.sleep(0.05)
    return size


@pytest.mark.parametrize("side", SIDES)
async def test_pause_only_above_the_high_water_mark(side: Side) -> None:
    """asyncio pauses when the buffer is *above* ``high``: at ``high``, drain() returns."""

    async def scenario(streams: Streams) -> Outcome:
        async with connected(streams, side, small_buffers=True) as (_, writer, _):
            size = await clog(writer)
            writer.transport.set_write_buffer_limits(high=size + 10, low=0)
            writer.write(b"y" * 10)
            at_mark = await drains_promptly(writer)
            writer.write(b"y")
            above_mark = await drains_promptly(writer)
            return (at_mark, above_mark)

    actual, expected = await both(scenario)
    assert expected == (True, False)  # the scenario reaches the edge
    assert actual == expected


# -- the errors drain() raises after a send failed ------------------------------


async def fail_a_send(reader: Any, writer: Any, peer: socket.socket) -> Outcome:
    """Close the peer, write until a drain() fails; return that drain's error."""
    peer.close()
    await anyio.sleep(0.05)
    with anyio.fail_after(10):
        while True:
            writer.write(b"x" * 1000)
            try:
                await writer.drain()
            except OSError as exc:
                return describe(exc)
            await anyio.sleep(0.01)


@pytest.mark.parametrize("side", SIDES)
async def test_drain_errors_after_a_failed_send_match_asyncio(side: Side) -> None:
    """The first drain() after the failed send, and the next, raise what asyncio's do.

    CPython: the first raises ``ConnectionResetError('Connection lost')`` (the
    protocol saw the loss), later ones the send's own error (``BrokenPipeError``
    here), which ``connection_lost`` recorded on the reader.
    """

    async def scenario(streams: Streams) -> Outcome:
        async with connected(streams, side) as (reader, writer, peer):
            first = await fail_a_send(reader, writer, peer)
            second = await outcome_of(writer.drain())
            third = await outcome_of(writer.drain())
            return (first, second, third)

    actual, expected = await both(scenario)
    assert actual == expected


@pytest.mark.parametrize("side", SIDES)
async def test_reader_reports_a_failed_send_like_asyncio(side: Side) -> None:
    """After a failed send, ``reader.exception()`` and a read show the send's error."""

    async def scenario(streams: Streams) -> Outcome:
        async with connected(streams, side) as (reader, writer, peer):
            await fail_a_send(reader, writer, peer)
            await anyio.sleep(0.05)
            return (
                describe(reader.exception()),
                await outcome_of(reader.read(10)),
                writer.is_closing(),
            )

    actual, expected = await both(scenario)
    assert actual == expected


# -- aclose() returns once the connection is closed -----------------------------


def received_without_waiting(peer: socket.socket) -> Outcome:
    """What the peer can read right now, and whether the end of the stream is there."""
    peer.setblocking(False)
    data = bytearray()
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return (bytes(data), "no EOF yet")
        if not chunk:
            return (bytes(data), "EOF")
        data += chunk


@pytest.mark.parametrize("side", SIDES)
async def test_aclose_returns_once_the_connection_is_closed(side: Side) -> None:
    """``await writer.aclose()`` is ``close()`` + ``wait_closed()``: on return the
    data and the end of the stream have reached the peer, as after asyncio's
    ``close()`` + ``wait_closed()``."""

    async def scenario(streams: Streams) -> Outcome:
        async with connected(streams, side) as (_, writer, peer):
            writer.write(b"data")
            if streams is asyncio:
                writer.close()
                await writer.wait_closed()
            else:
                await writer.aclose()
            return (writer.is_closing(), received_without_waiting(peer))

    actual, expected = await both(scenario)
    assert expected == (True, (b"data", "EOF"))
    assert actual == expected


# -- one read at a time ---------------------------------------------------------


@pytest.mark.parametrize("size", [100, 2**17, 2**20])
@pytest.mark.parametrize("side", SIDES)
async def test_second_concurrent_read_is_rejected(side: Side, size: int) -> None:
    """While one ``read(n)`` waits, another gets ``RuntimeError``, whatever ``n``
    (large reads take a zero-copy path in source mode); the first still gets
    the data."""

    async def scenario(streams: Streams) -> Outcome:
        async with connected(streams, side) as (reader, _, peer):
            first: list[bytes] = []

            async def read_first() -> None:
                first.append(await reader.read(size))

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(read_first)
                await anyio.sleep(0.05)
                second = await outcome_of(reader.read(size))
                peer.sendall(b"x")
            return (second, first)

    actual, expected = await both(scenario)
    second = expected[0]
    assert isinstance(second, tuple)
    assert second[0] == "RuntimeError"
    assert actual == expected


# -- a connection error is kept ----------------------------------------------------


def reset(peer: socket.socket) -> None:
    """Close ``peer`` so that the connection is reset (SO_LINGER on, timeout 0)."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


@pytest.mark.parametrize("side", SIDES)
async def test_connection_error_is_raised_by_every_read(side: Side) -> None:
    """After a reset every read raises the same error (the same object, as
    asyncio's ``set_exception``), and ``exception()`` returns it."""

    async def scenario(streams: Streams) -> Outcome:
        async with connected(streams, side) as (reader, _, peer):
            reset(peer)
            await anyio.sleep(0.05)
            errors: list[BaseException | None] = []
            reads: list[Callable[[], Awaitable[bytes]]] = [
                lambda: reader.read(100),
                reader.readline,
                lambda: reader.readexactly(1),
                lambda: reader.readuntil(b"!"),
                lambda: reader.read(100),
            ]
            for read in reads:
                try:
                    await read()
                except Exception as exc:
                    errors.append(exc)
                else:
                    errors.append(None)
            first = errors[0]
            return (
                tuple(describe(exc) for exc in errors),
                all(exc is first for exc in errors),
                reader.exception() is first,
            )

    actual, expected = await both(scenario)
    errors = expected[0]
    assert isinstance(errors, tuple)
    assert errors[0][0] == "ConnectionResetError"
    assert actual == expected


# -- a finished connection is not kept by its server --------------------------------


async def collected(ref: weakref.ref[Any]) -> bool:
    """Whether ``ref``'s object is collected within about a second: the
    server may still be finishing with the handler's task."""
    for _ in range(50):
        gc.collect()
        if ref() is None:
            return True
        await anyio.sleep(0.02)
    return False


async def test_finished_connection_is_released_by_the_server() -> None:
    """Once a handler has returned and its connection is closed, nothing keeps
    its writer alive (asyncio's server keeps none); ``close_clients()`` and
    ``abort_clients()`` then have nothing to do with it."""

    async def scenario(streams: Streams) -> Outcome:
        refs: list[weakref.ref[Any]] = []
        done = anyio.Event()

        async def handler(reader: Any, writer: Any) -> None:
            refs.append(weakref.ref(writer))
            writer.write(b"bye")
            writer.close()
            await writer.wait_closed()
            done.set()

        server = await streams.start_server(handler, "127.0.0.1", 0)
        async with server:
            with socket.create_connection(server.sockets[0].getsockname()) as client:
                with anyio.fail_after(5):
                    await done.wait()
                    alive = not await collected(refs[0])
                if streams is portastreams:
                    server.close_clients()
                    server.abort_clients()
                client.settimeout(5)
                received = client.recv(100)
        return (alive, received)

    actual, expected = await both(scenario)
    assert expected == (False, b"bye")
    assert actual == expected


async def test_a_connection_the_server_closed_is_released_when_its_handler_ends() -> (
    None
):
    """``abort_clients()`` closes a connection while its handler reads; once
    the handler has returned, the server keeps nothing of it either."""
    refs: list[weakref.ref[Any]] = []
    done = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        refs.append(weakref.ref(writer))
        await reader.read()  # until the server's close ends it
        done.set()

    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    async with server:
        with socket.create_connection(server.sockets[0].getsockname()):
            with anyio.fail_after(5):
                while not refs:
                    await anyio.sleep(0.01)
                server.abort_clients()
                await done.wait()
                released = await collected(refs[0])
    assert released


# -- ssl_handshake_timeout must be positive ------------------------------------------


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server context, client context)`` for ``localhost``."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


TIMEOUTS = [0, -1, 0.0]


async def rejected_handshake_timeout(
    streams: Streams, timeout: float, context: ssl.SSLContext
) -> Outcome:
    """``open_connection(ssl=..., ssl_handshake_timeout=timeout)`` over our own socket.

    With ``sock=`` the socket stays ours to close: CPython's
    ``open_connection(host, port, ...)`` leaks its socket on this error.
    """
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as sock,
    ):
        return await outcome_of(
            streams.open_connection(
                sock=sock,
                ssl=context,
                server_hostname="localhost",
                ssl_handshake_timeout=timeout,
            )
        )


@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_open_connection_rejects_a_non_positive_handshake_timeout(
    timeout: float, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """``ValueError``, with asyncio's message."""
    _, client_context = tls_contexts
    actual, expected = await both(
        lambda streams: rejected_handshake_timeout(streams, timeout, client_context)
    )
    assert expected[0] == "ValueError"
    assert actual == expected


@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_start_tls_rejects_a_non_positive_handshake_timeout(
    timeout: float, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """The same ``ValueError`` as ``open_connection`` (both build CPython's
    ``SSLProtocol``, which checks the value)."""
    _, client_context = tls_contexts
    expected = await on_asyncio(
        lambda: rejected_handshake_timeout(asyncio, timeout, client_context)
    )
    async with connected(portastreams, "client") as (_, writer, _):
        actual = await outcome_of(
            writer.start_tls(
                client_context,
                server_hostname="localhost",
                ssl_handshake_timeout=timeout,
            )
        )
    assert actual == expected


@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_start_server_rejects_a_non_positive_handshake_timeout(
    timeout: float, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """The same ``ValueError`` as ``open_connection``, at once, binding nothing.

    CPython checks the value only when a client connects (the error is
    logged and the client dropped); portastreams checks it before binding,
    so the mistake shows at start-up -- the same error, earlier.
    """
    server_context, client_context = tls_contexts
    expected = await on_asyncio(
        lambda: rejected_handshake_timeout(asyncio, timeout, client_context)
    )
    actual = await outcome_of(
        portastreams.start_server(
            lambda r, w: None,
            "127.0.0.1",
            0,
            ssl=server_context,
            ssl_handshake_timeout=timeout,
        )
    )
    assert actual == expected
    # Nothing was left bound: a leaked listener would warn when collected.
    gc.collect()


# -- a server keeps accepting after an accept error -------------------------------------


class AcceptErrors(logging.Handler):
    """Counts log records about running out of file descriptors."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        if "Too many open files" in text or "EMFILE" in text:
            self.count += 1


async def test_server_keeps_accepting_after_running_out_of_file_descriptors() -> None:
    """An ``accept()`` that fails with EMFILE is logged, and the server accepts
    the same client once descriptors are free again (asyncio retries after a
    pause; so must every backend)."""

    async def scenario(streams: Streams) -> Outcome:
        async def handler(reader: Any, writer: Any) -> None:
            writer.write(await reader.read(100))
            writer.close()
            await writer.wait_closed()

        errors = AcceptErrors()
        loggers = [logging.getLogger("asyncio"), logging.getLogger("portastreams")]
        for logger in loggers:
            logger.addHandler(errors)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        server = await streams.start_server(handler, "127.0.0.1", 0)
        try:
            async with server:
                with socket.create_connection(
                    server.sockets[0].getsockname()
                ) as client:
                    # No descriptor left for the accepted socket: the
                    # lowest free number becomes the limit.
                    free = os.dup(0)
                    os.close(free)
                    resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))
                    try:
                        with anyio.fail_after(5):
                            while errors.count == 0:
                                await anyio.sleep(0.01)
                        await anyio.sleep(0.2)  # failing accepts are retried
                    finally:
                        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                    client.sendall(b"ping")
                    client.setblocking(False)
                    with anyio.fail_after(5):
                        await anyio.wait_readable(client)
                    echoed = client.recv(100)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for logger in loggers:
                logger.removeHandler(errors)
        return (errors.count > 0, echoed)

    actual, expected = await both(scenario)
    assert expected == (True, b"ping")
    assert actual == expected
