"""What a server logs about its handlers, word for word, and how it is served.

The log lines are part of the contract operators rely on (they grep for
them): a client's reset is one INFO line naming the client and the error,
its traceback at DEBUG; a handler ended by the server's own close or abort
is a DEBUG line only. The messages are built here from what the handler
itself saw (its exception, its connection's peer address), not typed in.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Any

import anyio
import pytest
from certificates import client_context, server_context

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams import _server as server_module

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


def _reset(client: socket.socket) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "portastreams" and r.levelno == level
    ]


@pytest.mark.parametrize("message", ["", "by the peer"])
async def test_a_connection_error_is_one_info_line_naming_the_client(
    caplog: pytest.LogCaptureFixture, message: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="portastreams")
    seen: list[tuple[Any, BaseException]] = []
    finished = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            await reader.readexactly(100)
        except ConnectionError as exc:
            error = ConnectionResetError(message) if message else ConnectionResetError()
            seen.append((writer.get_extra_info("peername"), error))
            raise error from exc
        finally:
            finished.set()

    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(TIMEOUT):
        async with server:
            client = socket.create_connection(("127.0.0.1", port))
            client_address = client.getsockname()
            client.sendall(b"partial")
            await anyio.sleep(0.1)
            _reset(client)
            await finished.wait()
    ((peer, error),) = seen
    assert peer == client_address
    described = (
        f"ConnectionResetError: {message}" if message else "ConnectionResetError"
    )
    (info,) = _records(caplog, logging.INFO)
    assert info.getMessage() == f"connection from {peer} lost: {described}"
    debug = [
        r
        for r in _records(caplog, logging.DEBUG)
        if r.getMessage() == "connection error in client_connected_cb"
    ]
    assert len(debug) == 1
    assert debug[0].exc_info is not None
    assert debug[0].exc_info[1] is error


async def test_a_handler_ended_by_abort_clients_is_a_debug_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="portastreams")
    started = anyio.Event()
    aborted = anyio.Event()
    finished = anyio.Event()
    errors: list[BaseException] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            started.set()
            await aborted.wait()
            writer.write(b"too late")
            await writer.drain()
        except ConnectionError as exc:
            errors.append(exc)
            raise
        finally:
            finished.set()

    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(TIMEOUT):
        async with server:
            _reader, writer = await portastreams.open_connection("127.0.0.1", port)
            await started.wait()
            server.abort_clients()
            aborted.set()
            await finished.wait()
            writer.close()
            await writer.wait_closed()
    (error,) = errors
    assert not _records(caplog, logging.INFO)
    assert not _records(caplog, logging.ERROR)
    messages = [r.getMessage() for r in _records(caplog, logging.DEBUG)]
    assert f"handler ended by the server's close: {error!r}" in messages


async def test_start_serving_needs_a_served_open_server() -> None:
    server = await portastreams.start_server(
        lambda r, w: None, "127.0.0.1", 0, start_serving=False
    )
    with pytest.raises(RuntimeError) as info:
        await server.start_serving()
    assert str(info.value) == (
        "start_serving() needs a running server: call it inside "
        "'async with server:' or use serve_forever()"
    )
    assert repr(server) == f"<Server sockets={server.sockets!r}>"
    server.close()
    with pytest.raises(RuntimeError) as info:
        await server.start_serving()
    assert str(info.value) == f"server {server!r} is closed"


async def _answered(port: int) -> bytes:
    reader, writer = await portastreams.open_connection("127.0.0.1", port)
    try:
        writer.write(b"ping\n")
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def _echo_line(reader: StreamReader, writer: StreamWriter) -> None:
    writer.write(await reader.readline())
    await writer.drain()


async def test_serve_forever_inside_async_with_can_be_cancelled_and_restarted() -> None:
    server = await portastreams.start_server(
        _echo_line, "127.0.0.1", 0, start_serving=False
    )
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(TIMEOUT):
        async with server:
            for _ in range(2):
                async with anyio.create_task_group() as group:
                    await group.start(server.serve_forever)
                    assert await _answered(port) == b"ping\n"
                    with pytest.raises(RuntimeError, match="already being awaited"):
                        await server.serve_forever()
                    group.cancel_scope.cancel()
                assert server.is_serving()
        assert not server.is_serving()


class _ClosedUvloopWriter:
    """A writer whose transport fails ``get_extra_info()``, as uvloop's closed
    transports do."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")


class _Writer:
    def __init__(self, peer: Any) -> None:
        self.asked: list[str] = []
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        self.asked.append(name)
        return self.peer if name == "peername" else default


def test_the_log_names_the_peer_or_a_closed_connection() -> None:
    writer = _Writer(("127.0.0.1", 41234))
    assert server_module._peer(writer) == ("127.0.0.1", 41234)  # type: ignore[arg-type]
    assert writer.asked == ["peername"]
    closed = _ClosedUvloopWriter()
    assert server_module._peer(closed) == "a closed connection"  # type: ignore[arg-type]


def test_the_not_serving_watchdog_sees_only_waiting_connections() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as quiet,
        socket.create_server(("127.0.0.1", 0)) as busy,
        socket.create_server(("127.0.0.1", 0)) as closed,
    ):
        closed.close()
        assert not server_module._has_pending_connection([quiet])
        assert not server_module._has_pending_connection([closed])
        assert not server_module._has_pending_connection([])
        with socket.create_connection(busy.getsockname()):
            deadline = time.monotonic() + TIMEOUT
            while not server_module._has_pending_connection([closed, quiet, busy]):
                assert time.monotonic() < deadline, "the connection never showed"
                time.sleep(0.01)
            assert not server_module._has_pending_connection([closed, quiet])


async def test_serve_forever_alone_serves_a_server_started_not_serving() -> None:
    server = await portastreams.start_server(
        _echo_line, "127.0.0.1", 0, start_serving=False
    )
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as group:
            await group.start(server.serve_forever)
            assert server.is_serving()
            assert await _answered(port) == b"ping\n"
            server.close()
    assert not server.is_serving()


async def test_a_failed_tls_setup_is_a_debug_line_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="portastreams")
    server = await portastreams.start_server(
        _echo_line, "127.0.0.1", 0, ssl=server_context(), ssl_handshake_timeout=5
    )
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(TIMEOUT):
        async with server:
            # A client that speaks plain text to a TLS server.
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while not any(
                    r.getMessage().startswith("connection setup (TLS handshake) failed")
                    for r in _records(caplog, logging.DEBUG)
                ):
                    await anyio.sleep(0.01)
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
            )
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
            await writer.wait_closed()
    (failure,) = [
        r
        for r in _records(caplog, logging.DEBUG)
        if r.getMessage().startswith("connection setup (TLS handshake) failed")
    ]
    error = failure.args[0] if isinstance(failure.args, tuple) else None
    assert isinstance(error, OSError)
    assert failure.getMessage() == f"connection setup (TLS handshake) failed: {error!r}"
    assert not _records(caplog, logging.ERROR)
    assert not _records(caplog, logging.INFO)
