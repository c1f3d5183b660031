"""``StreamWriter`` at its edges, compared with asyncio's ``StreamWriter``.

The writer is a veneer over a transport and a protocol, so the checks here
build it over small stand-ins where that is what asyncio's writer is built
over too (its ``repr``, ``start_tls`` on something that cannot do TLS), and
over real connections on every backend for the rest: the AnyIO
``ByteSendStream`` methods (``send``, ``send_eof``, ``aclose``) and
``start_tls`` given something that is not an ``ssl.SSLContext``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import anyio
import pytest
from certificates import client_context, server_context
from reference import on_asyncio, outcome

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams._memory import DEFAULT_CAPACITY
from portastreams.testing import connected_pair

TIMEOUT = 10.0
#: Far more than the in-memory pipe and the peer's reader hold together, so
#: some of it waits in the writer until the peer reads.
SEND_SIZE = 64 * DEFAULT_CAPACITY


class StandInTransport:
    """Just enough of a transport for a writer's repr and ``__del__``."""

    def __repr__(self) -> str:
        return "<StandInTransport>"

    def is_closing(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_repr_matches_asyncio() -> None:
    transport = StandInTransport()
    loop = asyncio.new_event_loop()
    try:
        asyncio_reader = asyncio.StreamReader(loop=loop)
        for reader in (None, asyncio_reader):
            theirs = asyncio.StreamWriter(transport, None, reader, loop)  # type: ignore[arg-type]
            ours = StreamWriter(transport, None, reader)  # type: ignore[arg-type]
            assert repr(ours) == repr(theirs)
    finally:
        loop.close()


def test_repr_names_the_reader() -> None:
    reader = StreamReader()
    writer = StreamWriter(StandInTransport(), None, reader)
    assert (
        repr(writer) == f"<StreamWriter transport=<StandInTransport> reader={reader!r}>"
    )


@pytest.mark.anyio
async def test_start_tls_without_tls_support_is_not_implemented() -> None:
    """A writer over a protocol that cannot upgrade says so, naming the transport."""
    writer = StreamWriter(StandInTransport(), object(), None)
    with anyio.fail_after(TIMEOUT), pytest.raises(NotImplementedError) as caught:
        await writer.start_tls(ssl.create_default_context())
    assert str(caught.value) == "start_tls() is not supported on StandInTransport"


async def asyncio_start_tls_outcome(context: Any) -> tuple[str, ...]:
    """What asyncio's ``writer.start_tls(context)`` raises for a bad context."""
    _reader, writer = await asyncio_connection()
    try:
        await cast("Any", writer).start_tls(context)
    except Exception as exc:
        return (type(exc).__name__,)
    finally:
        writer.close()
    return ("no exception",)


async def asyncio_connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connection = await asyncio.open_connection("127.0.0.1", port)
    server.close()
    return connection


@pytest.mark.anyio
@pytest.mark.parametrize("context", [None, "not a context", ssl.Purpose.SERVER_AUTH])
async def test_start_tls_rejects_what_is_not_an_ssl_context(context: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connected_pair() as ((_reader, writer), _far):
            with pytest.raises(TypeError) as caught:
                await writer.start_tls(context)
            # The writer is still usable afterwards.
            assert not writer.is_closing()
        if sys.version_info >= (3, 11):  # asyncio's writer has start_tls()
            theirs = await on_asyncio(lambda: asyncio_start_tls_outcome(context))
            assert (outcome(caught.value)[0],) == theirs
    assert type(context).__name__ in str(caught.value)


@pytest.mark.anyio
async def test_send_is_write_then_drain() -> None:
    with anyio.fail_after(TIMEOUT):
        async with connected_pair() as ((_reader, writer), (far_reader, _w)):
            writer.transport.set_write_buffer_limits(high=0)
            sent = anyio.Event()

            async def send() -> None:
                await writer.send(b"x" * SEND_SIZE)
                sent.set()

            async with anyio.create_task_group() as group:
                group.start_soon(send)
                await anyio.wait_all_tasks_blocked()
                # drain() waits for the peer: nothing has been read yet.
                assert not sent.is_set()
                assert await far_reader.readexactly(SEND_SIZE) == b"x" * SEND_SIZE
            assert sent.is_set()


@pytest.mark.anyio
async def test_send_eof_half_closes() -> None:
    with anyio.fail_after(TIMEOUT):
        async with connected_pair() as ((reader, writer), (far_reader, far_writer)):
            writer.write(b"last")
            await writer.send_eof()
            assert await far_reader.read() == b"last"
            assert far_reader.at_eof()
            # Only one direction is closed.
            far_writer.write(b"answer")
            assert await reader.readexactly(6) == b"answer"
            assert not writer.is_closing()


@pytest.mark.anyio
async def test_aclose_closes_and_waits() -> None:
    with anyio.fail_after(TIMEOUT):
        async with connected_pair() as ((_reader, writer), (far_reader, _w)):
            writer.write(b"bye")
            await writer.aclose()
            assert writer.is_closing()
            assert await far_reader.read() == b"bye"
            assert far_reader.at_eof()


@pytest.mark.anyio
async def test_extra_attributes_are_the_protocols(anyio_backend: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_server(
            lambda reader, writer: None, "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            attributes = writer.extra_attributes
            assert attributes.keys() == reader.extra_attributes.keys()
            sock = writer.get_extra_info("socket")
            assert attributes[anyio.abc.SocketAttribute.raw_socket]() is sock
            writer.close()
            await writer.wait_closed()


@pytest.mark.anyio
async def test_writes_after_a_graceful_close_by_the_server() -> None:
    # Server.close_clients() closes each connection gracefully (a half-close,
    # then a wait for the client's end). For the handler it is a close():
    # the writer is closing, writes are dropped, drain() says the connection
    # is lost -- on every path, though an asyncio transport that only
    # half-closed still calls itself open, and refuses writes after it.
    seen: dict[str, object] = {}
    started = anyio.Event()
    closing = anyio.Event()
    done = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            started.set()
            await closing.wait()
            seen["is_closing"] = writer.is_closing()
            writer.write(b"dropped")
            writer.writelines([b"dropped", b"too"])
            try:
                await writer.drain()
            except ConnectionResetError as exc:
                seen["drain"] = outcome(exc)
        finally:
            done.set()

    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            await started.wait()
            server.close_clients()
            closing.set()
            await done.wait()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
    assert seen == {
        "is_closing": True,
        "drain": ("ConnectionResetError", "Connection lost"),
    }


@contextlib.contextmanager
def deaf_tls_peer(starttls: bool = True, unix_path: str | None = None) -> Iterator[int]:
    """A TLS peer that never reads after the handshake: our close_notify is
    never answered. With ``starttls`` it upgrades on ``STARTTLS``, else at
    once. Listens on ``unix_path`` if given, else on TCP; yields its port."""
    if unix_path is None:
        listener = socket.create_server(("127.0.0.1", 0))
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(unix_path)
        listener.listen()
    listener.settimeout(TIMEOUT)
    finished = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            if starttls:
                conn.recv(9)  # "STARTTLS\n"
                conn.sendall(b"GO\n")
            with server_context().wrap_socket(conn, server_side=True):
                finished.wait(3 * TIMEOUT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        finished.set()
        thread.join(TIMEOUT)
        listener.close()


@pytest.mark.anyio
@pytest.mark.parametrize("family", ["tcp", "unix"])
async def test_open_connection_honours_ssl_shutdown_timeout(
    family: str, tmp_path: Any
) -> None:
    """``ssl_shutdown_timeout`` of a TLS client bounds its close (default 30 s)."""
    path = str(tmp_path / "deaf.sock")
    unix_path = path if family == "unix" else None
    with deaf_tls_peer(starttls=False, unix_path=unix_path) as port:
        with anyio.fail_after(TIMEOUT):
            if unix_path is None:
                _, writer = await portastreams.open_connection(
                    "127.0.0.1", port, ssl=client_context(), ssl_shutdown_timeout=0.2
                )
            else:
                _, writer = await portastreams.open_unix_connection(
                    unix_path,
                    ssl=client_context(),
                    server_hostname="localhost",
                    ssl_shutdown_timeout=0.2,
                )
            started = time.monotonic()
            writer.close()
            await writer.wait_closed()
    assert time.monotonic() - started < TIMEOUT / 2


@pytest.mark.anyio
@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio's StreamWriter.start_tls() is new in 3.11",
)
async def test_start_tls_honours_ssl_shutdown_timeout() -> None:
    # The default is 30 s: a close that waits for an answer that never comes
    # takes that long unless start_tls() passed the timeout on.
    with deaf_tls_peer() as port, anyio.fail_after(TIMEOUT):
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(
            client_context(), server_hostname="localhost", ssl_shutdown_timeout=0.2
        )
        started = time.monotonic()
        writer.close()
        await writer.wait_closed()
    assert time.monotonic() - started < TIMEOUT / 2
