"""TLS: verification policy, handshakes, STARTTLS, extra info and closing.

Every test runs on asyncio, asyncio + uvloop and trio. Certificates come from
a session-wide ``trustme`` CA; servers listen on 127.0.0.1 (and a Unix
socket), and every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import SocketListener
from anyio.streams.tls import TLSStream
from reference import on_asyncio
from tls_peer import close_during_start_tls, start_tls_with_a_peer

import portastreams
import portastreams.testing
from portastreams import StreamReader, StreamWriter
from portastreams._transport import StreamTransport

pytestmark = pytest.mark.anyio

#: Upper bound for any single test body.
TEST_TIMEOUT = 10.0

Handler = Callable[[StreamReader, StreamWriter], Awaitable[None]]


# -- certificates -------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for ``localhost`` and ``127.0.0.1``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def other_server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose certificate (same CA) names another host only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def foreign_server_context() -> ssl.SSLContext:
    """A certificate for ``localhost``/``127.0.0.1`` from a CA nobody trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def no_verify_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def default_context_trusts_ca(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> list[ssl.SSLContext]:
    """Make ``ssl.create_default_context()`` also trust the test CA.

    Everything else about the default context (verification, hostname
    checking) is untouched. Returns the list of contexts created.
    """
    original = ssl.create_default_context
    created: list[ssl.SSLContext] = []

    def create_default_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        ca.configure_trust(context)
        created.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", create_default_context)
    return created


# -- helpers ----------------------------------------------------------------


def _open_socket_fds() -> Iterator[int]:
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                yield int(name)
        except OSError:  # closed meanwhile
            continue


def sockets_connected_to(port: int) -> int:
    """How many of this process's sockets have ``127.0.0.1:port`` as their peer."""
    count = 0
    for fd in _open_socket_fds():
        try:
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with dup:
            try:
                peer = dup.getpeername()
            except OSError:
                continue
        if isinstance(peer, tuple) and peer[1] == port:
            count += 1
    return count


async def assert_no_client_socket(port: int) -> None:
    """No socket of ours is (still) connected to ``port``.

    Polls briefly: some transports release the descriptor on the next loop
    iteration after ``close()``.
    """
    with anyio.move_on_after(1):
        while sockets_connected_to(port):
            await anyio.sleep(0.01)
    assert sockets_connected_to(port) == 0


def port_of(server: portastreams.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def echo_lines(reader: StreamReader, writer: StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()


async def tcp_listener() -> tuple[SocketListener, int]:
    """A raw AnyIO listener on 127.0.0.1 (for peers that are not portastreams)."""
    sock = socket.create_server(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    return await SocketListener.from_socket(sock), port


@asynccontextmanager
async def a_client_of(
    handler: Callable[[StreamReader, StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[StreamReader, StreamWriter]]:
    """A plain-TCP client of a portastreams server serving ``handler``; the
    client is closed, then the server, when the block ends."""
    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    async with server:
        reader, writer = await portastreams.open_connection(
            "127.0.0.1", port_of(server)
        )
        async with closing(writer):
            yield reader, writer


@asynccontextmanager
async def closing(writer: StreamWriter) -> AsyncIterator[StreamWriter]:
    """Close ``writer`` when the block ends, even when an assertion fails.

    Otherwise a failing test would leave a server handler waiting for this
    client until the test's deadline, and leak the connection.
    """
    try:
        yield writer
    finally:
        writer.close()
        with anyio.move_on_after(2, shield=True):
            await writer.wait_closed()


async def receive_all(stream: TLSStream) -> tuple[bytes, str]:
    """Everything a standard-compatible TLS peer receives, and how it ended.

    AnyIO's ``TLSStream(standard_compatible=True)`` raises ``EndOfStream``
    only after a ``close_notify`` ("clean") and ``BrokenResourceError`` for a
    TCP close without one ("ragged").
    """
    received = bytearray()
    try:
        while True:
            received += await stream.receive()
    except anyio.EndOfStream:
        return bytes(received), "clean"
    except anyio.BrokenResourceError as exc:
        return bytes(received), f"ragged: {exc.__cause__!r}"


async def echo_roundtrip(reader: StreamReader, writer: StreamWriter) -> None:
    writer.write(b"hello\n")
    assert await reader.readline() == b"hello\n"


# -- echo -----------------------------------------------------------------


@pytest.mark.parametrize("server_hostname", [None, "localhost"])
async def test_tls_echo_tcp(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    server_hostname: str | None,
) -> None:
    """Lines and a large payload (flow control over TLS) echo back intact."""
    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            echo_lines, "127.0.0.1", 0, ssl=server_context
        )
        async with server:
            reader, writer = await portastreams.open_connection(
                "127.0.0.1",
                port_of(server),
                ssl=client_context,
                server_hostname=server_hostname,
            )
            async with closing(writer):
                for i in range(5):
                    writer.write(b"line %d\n" % i)
                for i in range(5):
                    assert await reader.readline() == b"line %d\n" % i
                big = bytes(range(256)) * 4096 + b"\n"  # 1 MiB + 1
                writer.write(big)
                await writer.drain()
                assert await reader.readexactly(len(big)) == big


async def test_tls_echo_unix(
    tmp_path: Path, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    path = str(tmp_path / "tls.sock")
    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_unix_server(
            echo_lines, path, ssl=server_context
        )
        async with server:
            with pytest.raises(ValueError, match="server_hostname"):
                await portastreams.open_unix_connection(path, ssl=client_context)
            reader, writer = await portastreams.open_unix_connection(
                path, ssl=client_context, server_hostname="localhost"
            )
            async with closing(writer):
                assert writer.get_extra_info("ssl_object") is not None
                writer.write(b"over unix\n")
                assert await reader.readline() == b"over unix\n"


# -- verification policy ----------------------------------------------------


async def test_hostname_mismatch_rejected_by_default(
    other_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """The CA is trusted but the certificate names another host."""
    handled = 0

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal handled
        handled += 1

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=other_server_context
        )
        port = port_of(server)
        async with server:
            for server_hostname in (None, "localhost"):
                with pytest.raises(ssl.SSLCertVerificationError) as info:
                    await portastreams.open_connection(
                        "127.0.0.1",
                        port,
                        ssl=client_context,
                        server_hostname=server_hostname,
                    )
                assert "match" in str(info.value) or "mismatch" in str(info.value)
                await assert_no_client_socket(port)
        assert handled == 0


async def test_untrusted_ca_rejected_by_default(
    foreign_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """A certificate from an unknown CA, with the right names, is rejected.

    ``ssl=True`` is the system's default context; ``client_context`` trusts
    only the test CA. Neither knows the foreign CA.
    """
    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            echo_lines, "127.0.0.1", 0, ssl=foreign_server_context
        )
        port = port_of(server)
        async with server:
            for context in (True, client_context):
                with pytest.raises(ssl.SSLCertVerificationError) as info:
                    await portastreams.open_connection("127.0.0.1", port, ssl=context)
                assert "certificate" in str(info.value)
                await assert_no_client_socket(port)


@pytest.mark.parametrize("which", ["hostname-mismatch", "untrusted-ca"])
async def test_no_verify_context_connects_when_asked(
    foreign_server_context: ssl.SSLContext,
    other_server_context: ssl.SSLContext,
    which: str,
) -> None:
    """A context that turns verification off reaches the servers rejected above."""
    context = (
        other_server_context if which == "hostname-mismatch" else foreign_server_context
    )
    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            echo_lines, "127.0.0.1", 0, ssl=context
        )
        port = port_of(server)
        async with server:
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port, ssl=no_verify_context()
            )
            async with closing(writer):
                await echo_roundtrip(reader, writer)
                # The caller's context, as given: nothing turned verification on.
                assert writer.get_extra_info("sslcontext").verify_mode == ssl.CERT_NONE


async def test_ssl_true_verifies_and_defaults_server_hostname(
    server_context: ssl.SSLContext,
    other_server_context: ssl.SSLContext,
    default_context_trusts_ca: list[ssl.SSLContext],
) -> None:
    """``ssl=True`` means ``ssl.create_default_context()`` and hostname = host.

    ``create_default_context`` is patched only to trust the test CA, so a
    connection that succeeds proves the default context was used, and one
    that fails on the host name proves hostname checking stays on.
    """
    with anyio.fail_after(TEST_TIMEOUT):
        good = await portastreams.start_server(
            echo_lines, "127.0.0.1", 0, ssl=server_context
        )
        other = await portastreams.start_server(
            echo_lines, "127.0.0.1", 0, ssl=other_server_context
        )
        async with good, other:
            for host in ("localhost", "127.0.0.1"):
                reader, writer = await portastreams.open_connection(
                    host, port_of(good), ssl=True
                )
                async with closing(writer):
                    context = writer.get_extra_info("sslcontext")
                    assert context is default_context_trusts_ca[-1]
                    assert context.verify_mode == ssl.CERT_REQUIRED
                    assert context.check_hostname
                    ssl_object = writer.get_extra_info("ssl_object")
                    assert ssl_object.server_hostname == host
                    await echo_roundtrip(reader, writer)

            # Trusted CA, wrong name: rejected, the host name was checked.
            with pytest.raises(ssl.SSLCertVerificationError):
                await portastreams.open_connection(
                    "127.0.0.1", port_of(other), ssl=True
                )
            await assert_no_client_socket(port_of(other))

            # An explicit server_hostname overrides the host.
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port_of(other), ssl=True, server_hostname="other.example"
            )
            async with closing(writer):
                assert writer.get_extra_info("ssl_object").server_hostname == (
                    "other.example"
                )
                await echo_roundtrip(reader, writer)


# -- STARTTLS -------------------------------------------------------------


async def test_start_tls_midstream_keeps_buffered_plaintext(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A STARTTLS exchange: plain command, plain reply, then both upgrade.

    The server answers ``OK`` and one more plain-text line in a single
    write, so the client's reader buffers ``EXTRA-PLAINTEXT`` while reading
    ``OK``. Only after the client starts its handshake does the server send
    TLS records, so those plain bytes precede every TLS byte: the client must
    read them first, after ``start_tls()`` returns, then the decrypted data.
    """
    server_info: dict[str, object] = {}

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        server_info["before"] = writer.get_extra_info("ssl_object")
        writer.write(b"OK\nEXTRA-PLAINTEXT\n")
        await writer.start_tls(server_context)
        server_info["after"] = writer.get_extra_info("ssl_object")
        server_info["can_write_eof"] = writer.can_write_eof()
        async for line in reader:
            writer.write(b"secure: " + line)
            await writer.drain()

    with anyio.fail_after(TEST_TIMEOUT):
        async with a_client_of(handler) as (reader, writer):
            assert writer.get_extra_info("ssl_object") is None
            assert writer.can_write_eof()
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"OK\n"

            await writer.start_tls(client_context, server_hostname="localhost")

            ssl_object = writer.get_extra_info("ssl_object")
            assert isinstance(ssl_object, ssl.SSLObject)
            assert writer.get_extra_info("sslcontext") is client_context
            assert not writer.can_write_eof()
            # The plain bytes buffered before the upgrade come first, in order.
            assert await reader.readline() == b"EXTRA-PLAINTEXT\n"
            # The same reader and writer carry on over TLS.
            for i in range(3):
                writer.write(b"msg %d\n" % i)
            for i in range(3):
                assert await reader.readline() == b"secure: msg %d\n" % i
            big = b"x" * 50_000 + b"\n"  # below the 64 KiB line limit
            writer.write(big)
            assert await reader.readexactly(len(big) + 8) == b"secure: " + big

    assert server_info["before"] is None
    assert isinstance(server_info["after"], ssl.SSLObject)
    assert server_info["can_write_eof"] is False
    # Nothing to complain about (e.g. asyncio's "returning true from
    # eof_received() has no effect when using ssl").
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ] == []


async def test_closing_while_a_server_start_tls_waits_is_connection_lost(
    server_context: ssl.SSLContext,
) -> None:
    """A handler closes its writer while its ``start_tls()`` waits for a client
    that never starts the handshake: ``start_tls()`` raises
    ``ConnectionResetError('Connection lost')`` (as on the client side, see
    docs/porting.rst), the handler's reads end, and the client sees EOF."""
    seen: dict[str, object] = {}

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"OK\n")

        async def upgrade() -> None:
            try:
                await writer.start_tls(server_context)
            except ConnectionResetError as exc:
                seen["start_tls"] = repr(exc)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(upgrade)
            await anyio.sleep(0.2)
            writer.close()
        await writer.wait_closed()
        seen["read"] = await reader.read()

    with anyio.fail_after(TEST_TIMEOUT):
        async with a_client_of(handler) as (reader, writer):
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"OK\n"
            # No handshake from here: the server's ClientHello wait is cut
            # short by its close. What arrives first is its EOF.
            assert await reader.read() == b""
    assert seen == {
        "start_tls": repr(ConnectionResetError("Connection lost")),
        "read": b"",
    }


async def test_start_tls_handshake_timeout(client_context: ssl.SSLContext) -> None:
    """``start_tls`` against a peer that never answers gives up in time.

    The connection is then dead: reading ends (EOF or a connection error)
    and ``close()``/``wait_closed()`` neither raise nor hang. (CPython's own
    ``StreamWriter.wait_closed()`` hangs forever here; the spec requires it
    to return once the connection is closed.)
    """

    async def silent(reader: StreamReader, writer: StreamWriter) -> None:
        await reader.read()  # until the client leaves

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(silent, "127.0.0.1", 0)
        port = port_of(server)
        async with server:
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await writer.start_tls(
                    client_context,
                    server_hostname="localhost",
                    ssl_handshake_timeout=0.3,
                )
            assert 0.25 <= time.monotonic() - start < 3
            await assert_no_client_socket(port)
            with anyio.fail_after(2):
                with suppress(OSError):
                    assert await reader.read() == b""
                writer.close()  # must not raise on the dead connection
                await writer.wait_closed()


# -- handshake timeouts ---------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
async def test_client_handshake_timeout(
    client_context: ssl.SSLContext, family: str, sock_dir: Path
) -> None:
    """A server that accepts the connection but never speaks TLS:
    ``TimeoutError`` (asyncio's ``ConnectionAbortedError`` too) naming the
    timeout, no leak.

    The listening socket is never ``accept()``-ed: the kernel completes the
    connection from its backlog, and nothing ever answers the ClientHello.
    """
    if family == "tcp":
        listening = socket.create_server(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        connect = partial(portastreams.open_connection, "127.0.0.1", port)
    else:
        path = str(sock_dir / "silent.sock")
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(path)
        listening.listen()
        connect = partial(
            portastreams.open_unix_connection, path, server_hostname="localhost"
        )
    with listening, anyio.fail_after(TEST_TIMEOUT):
        start = time.monotonic()
        with pytest.raises(TimeoutError) as raised:
            await connect(ssl=client_context, ssl_handshake_timeout=0.3)
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 3
        assert isinstance(raised.value, ConnectionAbortedError)
        assert str(raised.value) == str(portastreams.HandshakeTimeoutError(0.3))
        if family == "tcp":
            await assert_no_client_socket(port)


@pytest.mark.parametrize("family", ["tcp", "unix"])
async def test_server_handshake_timeout_drops_silent_client(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    family: str,
    sock_dir: Path,
) -> None:
    """A client that never sends a ClientHello is dropped (logged at DEBUG,
    naming the timeout); others are served. TCP and Unix servers alike."""
    handled = 0

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal handled
        handled += 1
        await echo_lines(reader, writer)

    caplog.set_level(logging.DEBUG, logger="portastreams")
    with anyio.fail_after(TEST_TIMEOUT):
        if family == "tcp":
            server = await portastreams.start_server(
                handler, "127.0.0.1", 0, ssl=server_context, ssl_handshake_timeout=0.5
            )
            port = port_of(server)
            connect_silently: Any = partial(anyio.connect_tcp, "127.0.0.1", port)
            connect = partial(
                portastreams.open_connection, "127.0.0.1", port, ssl=client_context
            )
        else:
            path = str(sock_dir / "tls.sock")
            server = await portastreams.start_unix_server(
                handler, path, ssl=server_context, ssl_handshake_timeout=0.5
            )
            connect_silently = partial(anyio.connect_unix, path)
            connect = partial(
                portastreams.open_unix_connection,
                path,
                ssl=client_context,
                server_hostname="localhost",
            )
        async with server:
            silent = await connect_silently()
            start = time.monotonic()
            # Served while the silent client's handshake is pending.
            reader, writer = await connect()
            async with closing(writer):
                await echo_roundtrip(reader, writer)
                assert time.monotonic() - start < 0.5
                # The silent client is disconnected after the server's timeout.
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await silent.receive()
                assert 0.4 <= time.monotonic() - start < 5
                await silent.aclose()
                # The good client still works.
                await echo_roundtrip(reader, writer)
        assert handled == 1
    assert [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("connection setup (TLS handshake) failed")
    ] == [
        "connection setup (TLS handshake) failed: "
        f"{portastreams.HandshakeTimeoutError(0.5)!r}"
    ]


async def test_plaintext_client_does_not_disturb_tls_server(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="portastreams")
    handled = 0

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal handled
        handled += 1
        await echo_lines(reader, writer)

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=server_context
        )
        port = port_of(server)
        async with server:
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port, ssl=client_context
            )
            async with closing(writer):
                await echo_roundtrip(reader, writer)

                plain_reader, plain_writer = await portastreams.open_connection(
                    "127.0.0.1", port
                )
                plain_writer.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                # The server gives up on it: an alert at most, then EOF (or RST).
                try:
                    reply = await plain_reader.read()
                except ConnectionResetError:
                    reply = b""
                assert b"HTTP" not in reply
                plain_writer.close()
                await plain_writer.wait_closed()

                await echo_roundtrip(reader, writer)
        assert handled == 1

    failures = [
        record
        for record in caplog.records
        if record.name == "portastreams"
        and record.levelno == logging.DEBUG
        and "handshake" in record.getMessage()
    ]
    assert len(failures) == 1, caplog.records
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- extra info and half-close ----------------------------------------------


TLS_INFO_NAMES = ("sslcontext", "ssl_object", "peercert", "cipher", "compression")


async def test_get_extra_info_over_tls(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server_side: dict[str, Any] = {}

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        for name in TLS_INFO_NAMES:
            server_side[name] = writer.get_extra_info(name)
        server_side["peercert-with-default"] = writer.get_extra_info(
            "peercert", "default"
        )
        await echo_lines(reader, writer)

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=server_context
        )
        async with server:
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port_of(server), ssl=client_context
            )
            async with closing(writer):
                await echo_roundtrip(reader, writer)

                assert writer.get_extra_info("sslcontext") is client_context
                ssl_object = writer.get_extra_info("ssl_object")
                assert isinstance(ssl_object, ssl.SSLObject)
                assert not ssl_object.server_side
                peercert = writer.get_extra_info("peercert")
                assert ("DNS", "localhost") in peercert["subjectAltName"]
                assert ("IP Address", "127.0.0.1") in peercert["subjectAltName"]
                cipher = writer.get_extra_info("cipher")
                assert isinstance(cipher, tuple)
                assert len(cipher) == 3
                name, version, bits = cipher
                assert isinstance(name, str)
                assert version.startswith("TLSv")
                assert isinstance(bits, int)
                assert bits > 0
                assert cipher == ssl_object.cipher()
                # As asyncio's SSL transport: a TLS name whose value is None is
                # answered None, not ``default`` (the name is known).
                assert writer.get_extra_info("compression") is None
                assert writer.get_extra_info("compression", "default") is None
                # The plain socket details are still there.
                assert writer.get_extra_info("peername")[:2] == (
                    "127.0.0.1",
                    port_of(server),
                )
                # A socket.socket (uvloop: its socket-like PseudoSocket).
                sock = writer.get_extra_info("socket")
                assert sock.getpeername() == writer.get_extra_info("peername")

    assert server_side["sslcontext"] is server_context
    assert isinstance(server_side["ssl_object"], ssl.SSLObject)
    assert server_side["ssl_object"].server_side
    # No client certificate was requested: None, as asyncio, even with a default.
    assert server_side["peercert"] is None
    assert server_side["peercert-with-default"] is None
    assert server_side["cipher"][1].startswith("TLSv")
    assert server_side["compression"] is None


async def test_get_extra_info_plain_connection_has_no_tls() -> None:
    server_side: dict[str, Any] = {}
    sentinel = object()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        for name in TLS_INFO_NAMES:
            server_side[name] = writer.get_extra_info(name, sentinel)
        await echo_lines(reader, writer)

    with anyio.fail_after(TEST_TIMEOUT):
        async with a_client_of(handler) as (reader, writer):
            await echo_roundtrip(reader, writer)
            for name in TLS_INFO_NAMES:
                assert writer.get_extra_info(name) is None, name
                assert writer.get_extra_info(name, sentinel) is sentinel, name
            assert writer.can_write_eof()
    assert server_side == dict.fromkeys(TLS_INFO_NAMES, sentinel)


async def test_write_eof_not_supported_over_tls(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """As asyncio's SSL transport: no half-close over TLS, the stream stays
    usable; the ``NotImplementedError`` is asyncio's, bare, on every path."""
    server_can_write_eof: list[bool] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        server_can_write_eof.append(writer.can_write_eof())
        with pytest.raises(NotImplementedError) as raised:
            writer.write_eof()
        assert raised.value.args == ()
        await echo_lines(reader, writer)

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=server_context
        )
        async with server:
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port_of(server), ssl=client_context
            )
            async with closing(writer):
                assert writer.can_write_eof() is False
                assert writer.transport.can_write_eof() is False
                with pytest.raises(NotImplementedError) as raised:
                    writer.write_eof()
                assert raised.value.args == ()
                assert not writer.is_closing()
                await echo_roundtrip(reader, writer)
    assert server_can_write_eof == [False]


# -- closing ----------------------------------------------------------------


async def test_client_close_sends_close_notify(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """``close()`` sends ``close_notify``: the peer sees a clean TLS EOF.

    The peer is AnyIO's ``TLSStream`` with ``standard_compatible=True``
    (see :func:`receive_all`), which tells a clean EOF from a ragged one.
    """
    listener, port = await tcp_listener()
    outcome: list[tuple[bytes, str]] = []

    async def peer() -> None:
        tcp = await listener.accept()
        tls = await TLSStream.wrap(
            tcp, server_side=True, ssl_context=server_context, standard_compatible=True
        )
        outcome.append(await receive_all(tls))
        await anyio.aclose_forcefully(tls)

    with anyio.fail_after(TEST_TIMEOUT):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(peer)
            _, writer = await portastreams.open_connection(
                "127.0.0.1", port, ssl=client_context
            )
            writer.write(b"last words")
            writer.close()
            await writer.wait_closed()
    assert outcome == [(b"last words", "clean")]


async def test_server_close_sends_close_notify(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """When a handler returns, the server's close sends ``close_notify`` too."""

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(b"goodbye from the server")

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=server_context
        )
        async with server:
            stream = await anyio.connect_tcp(
                "127.0.0.1",
                port_of(server),
                ssl_context=client_context,
                tls_hostname="localhost",
                tls_standard_compatible=True,
            )
            async with stream:
                assert isinstance(stream, TLSStream)
                outcome = await receive_all(stream)
            assert outcome == (b"goodbye from the server", "clean")


async def test_tcp_close_without_close_notify_reads_as_eof(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Design choice: a ragged EOF (no ``close_notify``) is a normal EOF.

    As asyncio: the reader returns ``b""`` instead of raising, because
    HTTP/1.x servers commonly close the TCP connection without the TLS
    closing handshake, and protocols that need truncation protection frame
    their messages (Content-Length, chunking...). See ``portastreams._tls``.
    """
    listener, port = await tcp_listener()

    async def peer() -> None:
        tcp = await listener.accept()
        tls = await TLSStream.wrap(
            tcp, server_side=True, ssl_context=server_context, standard_compatible=False
        )
        await tls.send(b"first line\nunterminated")
        await tcp.aclose()  # TCP FIN, no close_notify

    with anyio.fail_after(TEST_TIMEOUT):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(peer)
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port, ssl=client_context
            )
            async with closing(writer):
                assert await reader.readline() == b"first line\n"
                assert await reader.readline() == b"unterminated"
                assert await reader.readline() == b""
                assert await reader.read() == b""
                assert reader.at_eof()
                assert reader.exception() is None


# -- the seed's HTTP-headers example over https -----------------------------


async def test_seed_http_headers_over_https(
    server_context: ssl.SSLContext, default_context_trusts_ca: list[ssl.SSLContext]
) -> None:
    """The seed's "Get HTTP headers" example, ``ssl=True`` and all.

    The HTTPS server answers with an HTTP/1.0 response and then closes the
    TCP connection abruptly (no ``close_notify``), as many servers do.
    """
    listener, port = await tcp_listener()
    requests: list[bytes] = []

    async def https_server() -> None:
        tcp = await listener.accept()
        tls = await TLSStream.wrap(
            tcp, server_side=True, ssl_context=server_context, standard_compatible=False
        )
        request = b""
        while b"\r\n\r\n" not in request:
            request += await tls.receive()
        requests.append(request)
        await tls.send(
            b"HTTP/1.0 200 OK\r\n"
            b"Content-Type: text/html\r\n"
            b"Content-Length: 1234\r\n"
            b"Server: portastreams-test\r\n"
            b"\r\n"
        )
        await anyio.aclose_forcefully(tcp)

    headers: list[str] = []

    async def print_http_headers(hostname: str, port: int, path: str) -> None:
        # The seed, modernised: async/await and collecting instead of printing.
        reader, writer = await portastreams.open_connection(hostname, port, ssl=True)
        query = (f"HEAD {path or '/'} HTTP/1.0\r\nHost: {hostname}\r\n\r\n").encode(
            "latin-1"
        )
        writer.write(query)
        while True:
            line = await reader.readline()
            if not line:
                break
            text = line.decode("latin1").rstrip()
            if text:
                headers.append(f"HTTP header> {text}")
        # Ignore the body, close the socket
        writer.close()

    with anyio.fail_after(TEST_TIMEOUT):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(https_server)
            await print_http_headers("localhost", port, "/path/page.html")

    assert requests == [b"HEAD /path/page.html HTTP/1.0\r\nHost: localhost\r\n\r\n"]
    assert headers == [
        "HTTP header> HTTP/1.0 200 OK",
        "HTTP header> Content-Type: text/html",
        "HTTP header> Content-Length: 1234",
        "HTTP header> Server: portastreams-test",
    ]


async def test_write_during_start_tls_is_sent_encrypted_after_the_handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """A task that writes while another waits in ``start_tls()``: its bytes
    are held and sent over TLS once the handshake is done (with asyncio's own
    writer they would go out in plain text in the middle of the handshake,
    and break it). Documented in docs/porting.rst."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TEST_TIMEOUT)

    def slow_starttls_peer() -> None:
        conn, _ = listener.accept()
        conn.settimeout(TEST_TIMEOUT)
        with conn:
            assert conn.recv(9) == b"STARTTLS\n"
            conn.sendall(b"OK\n")
            time.sleep(0.3)  # the client's handshake waits meanwhile
            with server_context.wrap_socket(conn, server_side=True) as tls:
                lines = tls.makefile("rb")
                for _ in range(3):
                    tls.sendall(b"secure: " + lines.readline())

    async def asyncio_write_of_text() -> str:
        left, right = socket.socketpair()
        with left, right:
            transport, _ = await asyncio.get_running_loop().create_connection(
                asyncio.Protocol, sock=left
            )
            try:
                transport.write("text")  # type: ignore[arg-type]
            except TypeError as exc:
                return str(exc)
            finally:
                transport.abort()
        raise AssertionError("asyncio's transport took a str")

    asyncio_message = await on_asyncio(asyncio_write_of_text)
    with listener, anyio.fail_after(TEST_TIMEOUT):
        async with anyio.create_task_group() as peer:
            peer.start_soon(anyio.to_thread.run_sync, slow_starttls_peer)
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", listener.getsockname()[1]
            )
            async with closing(writer):
                writer.write(b"STARTTLS\n")
                assert await reader.readline() == b"OK\n"
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(
                        partial(
                            writer.start_tls,
                            client_context,
                            server_hostname="localhost",
                        )
                    )
                    await anyio.sleep(0.1)  # the handshake has begun
                    assert writer.get_extra_info("ssl_object") is None
                    before = writer.transport.get_write_buffer_size()
                    writer.write(b"early\n")
                    writer.writelines([b"early ", b"too\n"])
                    # Held, and counted in the write buffer meanwhile.
                    held = writer.transport.get_write_buffer_size() - before
                    assert held == len(b"early\nearly too\n")
                    # Its transport meanwhile checks types as asyncio's does.
                    with pytest.raises(TypeError) as raised:
                        writer.transport.write("text")
                    assert str(raised.value) == asyncio_message
                assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
                writer.write(b"after\n")
                for line in (b"early\n", b"early too\n", b"after\n"):
                    assert await reader.readline() == b"secure: " + line


@pytest.mark.parametrize("how", ["writer.close", "transport.abort"])
async def test_closing_while_a_client_start_tls_waits_is_connection_lost(
    client_context: ssl.SSLContext, how: str
) -> None:
    """``close()``, or the transport's ``abort()``, while ``start_tls()`` waits
    for a peer that never answers the ClientHello, on the connection's own
    path (the event loop's ``start_tls`` on asyncio and uvloop): ``start_tls()``
    raises ``ConnectionResetError('Connection lost')`` and reads end (see
    docs/porting.rst)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TEST_TIMEOUT)
    peer_done = threading.Event()

    def silent_starttls_peer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(9)
            conn.sendall(b"OK\n")
            peer_done.wait(TEST_TIMEOUT)

    with listener, anyio.fail_after(TEST_TIMEOUT):
        async with anyio.create_task_group() as peer:
            peer.start_soon(anyio.to_thread.run_sync, silent_starttls_peer)
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", listener.getsockname()[1]
            )
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"OK\n"

            errors = await close_during_start_tls(
                writer, client_context, how, after=0.2
            )
            assert await reader.read() == b""
            await writer.wait_closed()
            peer_done.set()
    assert errors == [repr(ConnectionResetError("Connection lost"))]


# -- which engine carries TLS ---------------------------------------------------


#: asyncio's TLS transport notices a peer's close from Python 3.11 on.
LOOP_TLS_FROM_THIS_PYTHON: bool = sys.version_info >= (3, 11)


def loop_tls_is_sound(anyio_backend_name: str) -> bool:
    """Whether TLS runs on the event loop's own TLS transport (docs/architecture.rst).

    asyncio's from 3.11 does; 3.10's misses a peer's close, uvloop's drops the
    last bytes at a ragged close, and trio has none: there portastreams' own
    TLS layer (``StreamTransport`` with a ``TLSSession``) carries it.
    """
    if anyio_backend_name != "asyncio" or not LOOP_TLS_FROM_THIS_PYTHON:
        return False
    return not type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def test_tls_engine_per_backend(
    tmp_path: Path,
    anyio_backend_name: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    """Clients (TCP, Unix) and accepted connections take the engine the docs name."""
    expected_native = loop_tls_is_sound(anyio_backend_name)
    seen: list[bool] = []

    def native(writer: StreamWriter) -> bool:
        return not isinstance(writer.transport, StreamTransport)

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        seen.append(native(writer))
        writer.write(await reader.readline())

    path = str(tmp_path / "engine.sock")
    with anyio.fail_after(TEST_TIMEOUT):
        tcp = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=server_context
        )
        unix = await portastreams.start_unix_server(handler, path, ssl=server_context)
        async with tcp, unix:
            for reader, writer in [
                await portastreams.open_connection(
                    "127.0.0.1", port_of(tcp), ssl=client_context
                ),
                await portastreams.open_unix_connection(
                    path, ssl=client_context, server_hostname="localhost"
                ),
            ]:
                async with closing(writer):
                    seen.append(native(writer))
                    writer.write(b"ping\n")
                    assert await reader.readline() == b"ping\n"
    assert seen == [expected_native] * 4


# -- a TLS close with everything still unread --------------------------------------


@pytest.mark.parametrize("close_notify", [True, False], ids=["close-notify", "ragged"])
async def test_server_reads_all_a_tls_client_sent_before_closing(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, close_notify: bool
) -> None:
    """A client sends 384 KiB and leaves before the handler reads: nothing is lost.

    The reader holds ``2 * limit`` bytes and pauses the connection; the rest
    waits. When the client's close arrives then, asyncio's TLS transport
    (3.11+) drops the decrypted bytes past one buffer of a
    ``BufferedProtocol``; a plain protocol, as asyncio's own streams use, is
    given them all.
    """
    payload = bytes(range(256)) * 1536  # 384 KiB: more than 2 * limit
    received: list[int | str] = []
    sent = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        await sent.wait()
        await anyio.sleep(0.2)  # the client's close arrives while paused
        try:
            received.append(len(await reader.read()))
        except OSError as exc:
            received.append(repr(exc))

    def client(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(TEST_TIMEOUT)
            with client_context.wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(payload)
                if close_notify:
                    # Send close_notify without waiting for the answer.
                    tls.setblocking(False)
                    with suppress(ssl.SSLWantReadError):
                        tls.unwrap()
                    tls.setblocking(True)
                # Then the socket's end (a FIN: shutdown() drops the TLS
                # layer), and what the server sends is drained until it
                # closes, so that nothing unread turns the close into a reset.
                tls.shutdown(socket.SHUT_WR)
                while tls.recv(65536):
                    pass

    with anyio.fail_after(TEST_TIMEOUT):
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, ssl=server_context
        )
        async with server, anyio.create_task_group() as task_group:
            task_group.start_soon(anyio.to_thread.run_sync, client, port_of(server))
            # The client has sent everything it can before the handler
            # reads: what the socket buffers hold.
            await anyio.sleep(0.5)
            sent.set()
    assert received == [len(payload)]


async def test_start_tls_twice_over_portastreams_tls_is_refused(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """A second ``start_tls()`` over portastreams' own TLS layer (trio,
    ``wrap_stream``, uvloop) raises ``RuntimeError`` naming the reason, and
    the TLS connection goes on (TLS inside TLS: see docs/porting.rst)."""
    left, right = portastreams.testing.memory_stream_pair(1 << 20)
    reader, writer = portastreams.wrap_stream(left)
    with anyio.fail_after(TEST_TIMEOUT):
        peer = await start_tls_with_a_peer(
            writer, right, client=client_context, server=server_context
        )
        with pytest.raises(RuntimeError, match=r"^the connection already uses TLS$"):
            await writer.start_tls(client_context, server_hostname="localhost")
        writer.write(b"still TLS\n")
        assert await peer.receive() == b"still TLS\n"
        await peer.send(b"and back\n")
        assert await reader.readline() == b"and back\n"
        writer.transport.abort()
        await writer.wait_closed()
        await peer.aclose()
