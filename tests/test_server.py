"""Servers: start_server / start_unix_server and the Server they return.

The serving model (``async with server:``, ``serve_forever``, ``start_serving``),
handler supervision (exceptions logged, connections flushed and closed),
closing (``wait_closed`` waits for handlers, ``close_clients``,
``abort_clients``) and the Unix socket file's life cycle. Every test runs on
asyncio, uvloop and trio.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from sockets import Kind

import portastreams
from portastreams import Server, StreamReader, StreamWriter

pytestmark = pytest.mark.anyio

Pair = tuple[StreamReader, StreamWriter]
Connect = Callable[[], Awaitable[Pair]]
Handler = Callable[[StreamReader, StreamWriter], Any]

MiB = 1024 * 1024


async def start(
    kind: Kind, directory: Path, handler: Handler, **kwargs: Any
) -> tuple[Server, Connect]:
    """Start (bind) a server; return it and a function connecting to it."""
    if kind == "tcp":
        server = await portastreams.start_server(handler, "127.0.0.1", 0, **kwargs)
        port = server.sockets[0].getsockname()[1]

        async def connect() -> Pair:
            return await portastreams.open_connection("127.0.0.1", port)

        return server, connect
    path = str(directory / "server.sock")
    server = await portastreams.start_unix_server(handler, path, **kwargs)

    async def connect_unix() -> Pair:
        return await portastreams.open_unix_connection(path)

    return server, connect_unix


async def echo_handler(reader: StreamReader, writer: StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def echo_once(connect: Connect, message: bytes = b"ping") -> bytes:
    """Connect, send ``message``, half-close, return everything received."""
    reader, writer = await connect()
    try:
        writer.write(message)
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def assert_refused(kind: Kind, directory: Path, port: int) -> None:
    """Nobody accepts connections at the server's address any more."""
    if kind == "tcp":
        with pytest.raises(ConnectionRefusedError):
            await portastreams.open_connection("127.0.0.1", port)
    else:
        with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
            await portastreams.open_unix_connection(str(directory / "server.sock"))


# -- the serving model ----------------------------------------------------------------


async def test_async_with_serves_then_closes(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, echo_handler)
        port = server.sockets[0].getsockname()[1] if kind == "tcp" else 0
        listening = server.sockets[0]
        async with server:
            assert server.is_serving()
            assert await echo_once(connect, b"one") == b"one"
            assert await echo_once(connect, b"two") == b"two"
        assert not server.is_serving()
        assert server.sockets == ()
        assert listening.fileno() == -1
        await server.wait_closed()
        await assert_refused(kind, sock_dir, port)


async def test_exception_in_async_with_body_propagates(
    kind: Kind, sock_dir: Path
) -> None:
    async def serve_then_fail(server: Server, connect: Connect) -> None:
        async with server:
            assert await echo_once(connect) == b"ping"
            raise KeyError("from the body")

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, echo_handler)
        # Bare, not wrapped in an exception group.
        with pytest.raises(KeyError, match="from the body"):
            await serve_then_fail(server, connect)
        assert not server.is_serving()
        assert server.sockets == ()


async def test_sockets_are_the_listening_sockets(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        server, _connect = await start(kind, sock_dir, echo_handler)
        async with server:
            (sock,) = server.sockets
            assert sock.type == socket.SOCK_STREAM
            if kind == "tcp":
                assert sock.family == socket.AF_INET
                assert sock.getsockname()[0] == "127.0.0.1"
                assert sock.getsockname()[1] > 0
            else:
                assert sock.family == socket.AF_UNIX
                assert sock.getsockname() == str(sock_dir / "server.sock")


async def test_get_loop_is_refused_naming_why(kind: Kind, sock_dir: Path) -> None:
    """A documented difference (docs/porting.rst): a portastreams server has
    no event loop object to return, on any backend."""
    with anyio.fail_after(10):
        server, _connect = await start(kind, sock_dir, echo_handler)
        async with server:
            with pytest.raises(NotImplementedError) as raised:
                server.get_loop()
    assert str(raised.value) == "portastreams servers are not tied to an asyncio loop"


async def test_start_serving_false(kind: Kind, sock_dir: Path) -> None:
    handled: list[bytes] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        data = await reader.read()
        handled.append(data)
        writer.write(data.upper())

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler, start_serving=False)
        assert server.is_serving() is False  # a bool, as asyncio's
        with pytest.raises(RuntimeError, match="start_serving"):
            await server.start_serving()
        async with server:
            assert not server.is_serving()
            # The socket is bound and listening: the kernel queues the client.
            reader, writer = await connect()
            writer.write(b"queued")
            writer.write_eof()
            await anyio.sleep(0.1)
            assert handled == []
            await server.start_serving()
            assert server.is_serving()
            await server.start_serving()  # a no-op when serving
            assert await reader.read() == b"QUEUED"
            assert handled == [b"queued"]
            writer.close()
            await writer.wait_closed()
        assert not server.is_serving()


async def test_serve_forever_with_task_group_start(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, echo_handler)
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve_forever)
            assert server.is_serving()
            assert await echo_once(connect, b"forever") == b"forever"
            with pytest.raises(RuntimeError, match="serve_forever"):
                await server.serve_forever()
            server.close()
        # Leaving the task group means serve_forever() returned.
        assert not server.is_serving()
        await server.wait_closed()
        with pytest.raises(RuntimeError, match="closed"):
            await server.serve_forever()


async def test_serve_forever_returns_after_close(kind: Kind, sock_dir: Path) -> None:
    returned = anyio.Event()

    async def serve(server: Server) -> None:
        await server.serve_forever()
        returned.set()

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, echo_handler)
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve, server)
            # Served even though serve_forever() has not reported being started.
            assert await echo_once(connect, b"x") == b"x"
            assert server.is_serving()
            assert not returned.is_set()
            server.close()
            await returned.wait()
        await server.wait_closed()
        assert server.sockets == ()


async def test_serve_forever_inside_async_with(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, echo_handler)
        async with server, anyio.create_task_group() as tg:
            await tg.start(server.serve_forever)
            assert await echo_once(connect, b"nested") == b"nested"
            server.close()
        assert not server.is_serving()


async def test_close_before_serving(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        server, _connect = await start(kind, sock_dir, echo_handler)
        listening = server.sockets[0]
        # As asyncio: wait_closed() on an open server waits for close().
        with anyio.move_on_after(0.1) as scope:
            await server.wait_closed()
        assert scope.cancelled_caught
        server.close()
        server.close()  # idempotent
        assert server.sockets == ()
        await server.wait_closed()
        assert listening.fileno() == -1
        if kind == "unix":
            assert not (sock_dir / "server.sock").exists()
        with pytest.raises(RuntimeError, match="closed"):
            async with server:
                pass


# -- handlers -------------------------------------------------------------------------------


async def test_raising_handler_is_logged_and_server_keeps_serving(
    kind: Kind, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal calls
        calls += 1
        data = await reader.read()
        if data == b"boom":
            writer.write(b"partial answer")
            raise ValueError("handler failure")
        writer.write(data)

    caplog.set_level(logging.ERROR, logger="portastreams")
    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            # What the handler wrote before raising is flushed, then EOF.
            assert await echo_once(connect, b"boom") == b"partial answer"
            assert server.is_serving()
            assert await echo_once(connect, b"fine") == b"fine"
            assert await echo_once(connect, b"boom") == b"partial answer"
            assert await echo_once(connect, b"still fine") == b"still fine"
    assert calls == 4
    failures = [
        record
        for record in caplog.records
        if record.name == "portastreams" and record.exc_info is not None
    ]
    assert len(failures) == 2
    for record in failures:
        assert record.levelno >= logging.ERROR
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], ValueError)
        assert "handler failure" in str(record.exc_info[1])


async def test_failing_handler_does_not_disturb_other_connections(
    kind: Kind, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        while line := await reader.readline():
            if line == b"fail\n":
                raise RuntimeError("this connection fails")
            writer.write(line)

    caplog.set_level(logging.ERROR, logger="portastreams")
    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            steady_reader, steady_writer = await connect()
            steady_writer.write(b"first\n")
            assert await steady_reader.readline() == b"first\n"
            failing_reader, failing_writer = await connect()
            failing_writer.write(b"fail\n")
            assert await failing_reader.read() == b""
            steady_writer.write(b"second\n")
            assert await steady_reader.readline() == b"second\n"
            for writer in (steady_writer, failing_writer):
                writer.close()
                await writer.wait_closed()
    assert any(
        record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
        for record in caplog.records
    )


async def test_plain_function_handler(kind: Kind, sock_dir: Path) -> None:
    seen: list[tuple[StreamReader, StreamWriter]] = []

    def handler(reader: StreamReader, writer: StreamWriter) -> None:
        seen.append((reader, writer))
        writer.write(b"hello from a plain function")

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            reader, writer = await connect()
            # The server flushes and closes the connection when it returns.
            assert await reader.read() == b"hello from a plain function"
            writer.close()
            await writer.wait_closed()
    assert len(seen) == 1
    assert isinstance(seen[0][0], StreamReader)
    assert isinstance(seen[0][1], StreamWriter)


async def test_handler_connection_is_flushed_and_closed_on_return(
    kind: Kind, sock_dir: Path
) -> None:
    data = random.Random(1).randbytes(3 * MiB)
    handler_writers: list[StreamWriter] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        handler_writers.append(writer)
        writer.write(data)  # no drain(), no close()

    with anyio.fail_after(20):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            reader, writer = await connect()
            assert await reader.read() == data
            writer.close()
            await writer.wait_closed()
    assert handler_writers[0].is_closing()


async def test_many_connections_in_parallel(kind: Kind, sock_dir: Path) -> None:
    results: dict[int, bytes] = {}

    async def client(connect: Connect, number: int) -> None:
        results[number] = await echo_once(connect, b"%d" % number * 1000)

    with anyio.fail_after(20):
        server, connect = await start(kind, sock_dir, echo_handler)
        async with server, anyio.create_task_group() as tg:
            for number in range(40):
                tg.start_soon(client, connect, number)
    assert results == {number: b"%d" % number * 1000 for number in range(40)}


async def test_handler_backpressure_reaches_the_client(
    kind: Kind, sock_dir: Path
) -> None:
    """A handler that does not read makes the client's drain() wait.

    The server must not buffer an unbounded amount on behalf of a handler
    that does not read.
    """
    release = anyio.Event()
    received: list[int] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        await release.wait()
        received.append(len(await reader.read()))

    block = b"b" * 256 * 1024
    with anyio.fail_after(20):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            _reader, writer = await connect()
            sent = 0
            while sent < 128 * MiB:
                writer.write(block)
                sent += len(block)
                with anyio.move_on_after(0.2) as scope:
                    await writer.drain()
                if scope.cancelled_caught:
                    break
            else:
                pytest.fail(f"drain() never waited although {sent} bytes went out")
            release.set()
            writer.close()
            await writer.wait_closed()
    assert received == [sent]


# -- closing ----------------------------------------------------------------------------------


async def test_wait_closed_waits_for_running_handlers(
    kind: Kind, sock_dir: Path
) -> None:
    started = anyio.Event()
    gate = anyio.Event()
    finished: list[str] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        started.set()
        await gate.wait()
        writer.write(b"finished")
        finished.append("handler")

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        port = server.sockets[0].getsockname()[1] if kind == "tcp" else 0
        async with server:
            reader, writer = await connect()
            await started.wait()
            server.close()
            assert not server.is_serving()
            waited = anyio.Event()

            async def wait_closed() -> None:
                await server.wait_closed()
                waited.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_closed)
                await anyio.sleep(0.2)
                # The handler is still running: wait_closed() is still waiting.
                assert not waited.is_set()
                # ... but no new connection is accepted.
                await assert_refused(kind, sock_dir, port)
                gate.set()
                await waited.wait()
            assert finished == ["handler"]
            assert await reader.read() == b"finished"
            writer.close()
            await writer.wait_closed()


async def test_wait_closed_with_serve_forever(kind: Kind, sock_dir: Path) -> None:
    gate = anyio.Event()
    started = anyio.Event()
    finished: list[str] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        started.set()
        await gate.wait()
        finished.append("handler")

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve_forever)
            _reader, writer = await connect()
            await started.wait()
            server.close()
            with anyio.move_on_after(0.2):
                await server.wait_closed()
            assert finished == []
            gate.set()
            await server.wait_closed()
            assert finished == ["handler"]
            writer.close()
            await writer.wait_closed()


async def test_close_clients(kind: Kind, sock_dir: Path) -> None:
    handler_results: list[bytes] = []
    connected = 0
    all_connected = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal connected
        writer.write(b"bye")
        connected += 1
        if connected == 3:
            all_connected.set()
        # Blocks until close_clients() closes the connection.
        handler_results.append(await reader.read())

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            pairs = [await connect() for _ in range(3)]
            await all_connected.wait()
            server.close()
            server.close_clients()
            for reader, writer in pairs:
                # Flushed before closing, then EOF; the client's own close
                # ends the server's graceful wait at once.
                assert await reader.read() == b"bye"
                writer.close()
                await writer.wait_closed()
            await server.wait_closed()
    assert handler_results == [b"", b"", b""]


async def test_abort_clients(kind: Kind, sock_dir: Path) -> None:
    handlers_done: list[str] = []
    connected = anyio.Event()
    big = b"a" * (16 * MiB)

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(big)  # the client does not read: stays buffered
        connected.set()
        with contextlib.suppress(OSError):
            await reader.read()
        handlers_done.append("done")

    with anyio.fail_after(10):
        server, connect = await start(kind, sock_dir, handler)
        async with server:
            reader, writer = await connect()
            await connected.wait()
            server.close()
            server.abort_clients()
            await server.wait_closed()
            assert handlers_done == ["done"]
            received = 0
            try:
                while chunk := await reader.read(MiB):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            # Aborted: the buffered data was dropped, not flushed.
            assert received < len(big)
            writer.close()
            await writer.wait_closed()


# -- Unix socket files -------------------------------------------------------------------------


async def test_unix_socket_file_removed_on_close(sock_dir: Path) -> None:
    path = sock_dir / "server.sock"
    with anyio.fail_after(10):
        server, connect = await start("unix", sock_dir, echo_handler)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        async with server:
            assert await echo_once(connect) == b"ping"
        await server.wait_closed()
    assert not path.exists()


async def test_unix_socket_file_kept_without_cleanup(sock_dir: Path) -> None:
    path = sock_dir / "server.sock"
    with anyio.fail_after(10):
        server, connect = await start(
            "unix", sock_dir, echo_handler, cleanup_socket=False
        )
        async with server:
            assert await echo_once(connect) == b"ping"
        await server.wait_closed()
    assert stat.S_ISSOCK(os.stat(path).st_mode)


async def test_unix_server_refuses_a_regular_file(sock_dir: Path) -> None:
    path = sock_dir / "server.sock"
    path.write_bytes(b"precious data")
    with anyio.fail_after(10), pytest.raises(FileExistsError):
        await portastreams.start_unix_server(echo_handler, str(path))
    assert path.read_bytes() == b"precious data"


async def test_unix_server_replaces_a_stale_socket(sock_dir: Path) -> None:
    path = sock_dir / "server.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with anyio.fail_after(10):
        server, connect = await start("unix", sock_dir, echo_handler)
        async with server:
            assert await echo_once(connect, b"fresh") == b"fresh"
    assert not path.exists()


async def test_unix_server_keeps_a_replacement_socket(sock_dir: Path) -> None:
    """Cleanup removes only the server's own socket file, not a newer one."""
    path = sock_dir / "server.sock"
    with anyio.fail_after(10):
        server, _connect = await start("unix", sock_dir, echo_handler)
        os.unlink(path)
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(str(path))
            server.close()
            await server.wait_closed()
            assert stat.S_ISSOCK(os.stat(path).st_mode)


async def test_server_on_a_given_socket(kind: Kind, sock_dir: Path) -> None:
    if kind == "tcp":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        address: Any = sock.getsockname()
    else:
        sock = socket.socket(socket.AF_UNIX)
        address = str(sock_dir / "given.sock")
        sock.bind(address)
    with anyio.fail_after(10):
        if kind == "tcp":
            server = await portastreams.start_server(echo_handler, sock=sock)
        else:
            server = await portastreams.start_unix_server(echo_handler, sock=sock)
        assert server.sockets[0].getsockname() == address
        async with server:
            if kind == "tcp":
                reader, writer = await portastreams.open_connection(*address)
            else:
                reader, writer = await portastreams.open_unix_connection(address)
            writer.write(b"given")
            writer.write_eof()
            assert await reader.read() == b"given"
            writer.close()
            await writer.wait_closed()
    assert sock.fileno() == -1
