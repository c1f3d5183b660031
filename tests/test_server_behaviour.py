"""Server behaviour at its edges, compared with ``asyncio.start_server`` where it can be.

Binding (ports as strings, repeated hosts, ``reuse_address``, bind errors),
refusing connections right after ``close()``, running out of file
descriptors while accepting, a graceful ``close_clients()``, what is logged
for a client's reset and for a server nobody serves, and a writer that is
dropped without ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from backends import running_task_names

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams import _server as server_module

pytestmark = pytest.mark.anyio


async def idle_handler(reader: StreamReader, writer: StreamWriter) -> None:
    await reader.read()


def asyncio_oracle(function: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``function`` on CPython's asyncio in a thread of its own."""
    return asyncio.run(function())  # type: ignore[arg-type]


async def oracle(function: Callable[[], Awaitable[Any]]) -> Any:
    return await anyio.to_thread.run_sync(asyncio_oracle, function)


async def asyncio_idle_handler(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await reader.read()


# -- binding -------------------------------------------------------------------


def listening_shape(sockets: Any) -> list[tuple[int, int]]:
    """What a server listens on, ports aside: ``(family, SO_REUSEADDR)`` each."""
    return sorted(
        (
            int(sock.family),
            int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0),
        )
        for sock in sockets
    )


@pytest.mark.parametrize(
    ("host", "port", "options"),
    [
        pytest.param("127.0.0.1", "0", {}, id="port-as-string"),
        pytest.param(["127.0.0.1", "127.0.0.1"], 0, {}, id="repeated-host"),
        pytest.param("127.0.0.1", 0, {"reuse_address": False}, id="no-reuse-address"),
        pytest.param("127.0.0.1", 0, {"reuse_address": True}, id="reuse-address"),
        pytest.param(None, 0, {}, id="every-address"),
    ],
)
async def test_binding_matches_asyncio(host: Any, port: Any, options: Any) -> None:
    async def theirs() -> list[tuple[int, int]]:
        server = await asyncio.start_server(asyncio_idle_handler, host, port, **options)
        shape = listening_shape(server.sockets)
        server.close()
        await server.wait_closed()
        return shape

    expected = await oracle(theirs)
    server = await portastreams.start_server(idle_handler, host, port, **options)
    try:
        assert listening_shape(server.sockets) == expected
    finally:
        server.close()
        await server.wait_closed()


async def test_bind_error_matches_asyncio() -> None:
    """A port in use: the same OSError type, errno and message as asyncio's."""
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]

    async def theirs() -> tuple[str, int | None, str]:
        try:
            await asyncio.start_server(
                asyncio_idle_handler, "127.0.0.1", port, reuse_address=False
            )
        except OSError as exc:
            return (type(exc).__name__, exc.errno, str(exc))
        raise AssertionError("asyncio bound a port in use")

    try:
        expected = await oracle(theirs)
        with pytest.raises(OSError, match="error while attempting to bind") as caught:
            await portastreams.start_server(
                idle_handler, "127.0.0.1", port, reuse_address=False
            )
        assert (type(caught.value).__name__, caught.value.errno, str(caught.value)) == (
            expected
        )
    finally:
        taken.close()


async def test_connect_right_after_close_is_refused() -> None:
    """As asyncio: close() closes the listening sockets before it returns."""
    server = await portastreams.start_server(idle_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        server.close()
        with pytest.raises(ConnectionRefusedError):
            await portastreams.open_connection("127.0.0.1", port)


# -- accepting without file descriptors ---------------------------------------------


@contextlib.contextmanager
def file_descriptors_exhausted() -> Iterator[list[int]]:
    """Lower the soft fd limit and fill it; yields the fds to free."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard)
    )
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        yield held
    finally:
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_accept_survives_running_out_of_file_descriptors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EMFILE on accept is logged once, backed off, and serving resumes."""
    caplog.set_level(logging.DEBUG, logger="portastreams")

    async def echo(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(await reader.readline())

    server = await portastreams.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        waiting = socket.create_connection(("127.0.0.1", port))
        with file_descriptors_exhausted() as held:
            await anyio.sleep(0.5)  # several accept attempts fail meanwhile
            assert server.is_serving()
            for fd in held:
                os.close(fd)
            held.clear()
        waiting.setblocking(False)
        with anyio.fail_after(10):
            stream = await anyio.abc.SocketStream.from_socket(waiting)
            await stream.send(b"after the burst\n")
            assert await stream.receive() == b"after the burst\n"
            await stream.aclose()
            # A new client is served too.
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"new\n")
            assert await reader.readline() == b"new\n"
            writer.close()
            await writer.wait_closed()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "accept" in errors[0].getMessage()
    assert "Too many open files" in errors[0].getMessage()


# -- closing clients ---------------------------------------------------------------


async def test_close_clients_is_graceful_under_traffic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Clients that keep sending get every byte written, then EOF -- no reset."""
    caplog.set_level(logging.DEBUG, logger="portastreams")
    connected = anyio.Event()
    count = 20
    handlers: list[StreamWriter] = []

    async def chatty(reader: StreamReader, writer: StreamWriter) -> None:
        handlers.append(writer)
        if len(handlers) == count:
            connected.set()
        while line := await reader.readline():
            writer.write(b"re: " + line)
            await writer.drain()

    server = await portastreams.start_server(chatty, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results: list[tuple[int, int]] = []

    async def client() -> None:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        sent = received = 0
        stop = anyio.Event()

        async def keep_sending() -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionError):
                while not stop.is_set():
                    writer.write(b"ping\n")
                    sent += 1
                    await writer.drain()
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as group:
            group.start_soon(keep_sending)
            while True:
                line = await reader.readline()  # a reset raises here
                if not line:
                    break
                assert line == b"re: ping\n"
                received += 1
            stop.set()
        results.append((sent, received))
        writer.close()
        await writer.wait_closed()

    with anyio.fail_after(20):
        async with server, anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(client)
            await connected.wait()
            await anyio.sleep(0.2)
            server.close_clients()
    assert len(results) == count
    assert all(received > 0 for _sent, received in results)
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not noisy, [r.getMessage() for r in noisy]


# -- logs ------------------------------------------------------------------------


async def test_client_reset_is_one_line_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="portastreams")
    finished = anyio.Event()

    async def reader_handler(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            await reader.readexactly(100)
        finally:
            finished.set()

    server = await portastreams.start_server(reader_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"partial")
            await anyio.sleep(0.1)
            client.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            client.close()
            await finished.wait()
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(info) == 1, [r.getMessage() for r in info]
    assert info[0].levelno == logging.INFO
    message = info[0].getMessage()
    assert "ConnectionResetError" in message
    assert "\n" not in message
    assert "anyio" not in message.lower()
    assert info[0].exc_info is None
    # The whole story is there at DEBUG.
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)


async def test_handler_bug_is_logged_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = anyio.Event()

    async def buggy(reader: StreamReader, writer: StreamWriter) -> None:
        done.set()
        raise KeyError("a bug")

    server = await portastreams.start_server(buggy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            _reader, writer = await portastreams.open_connection("127.0.0.1", port)
            await done.wait()
            writer.close()
            await writer.wait_closed()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Unhandled exception in client_connected_cb"
    ]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], KeyError)


async def test_server_nobody_serves_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forgetting ``async with server:`` is a warning naming the fix, not a silent hang."""
    monkeypatch.setattr(server_module, "NOT_SERVING_WARNING_DELAY", 0.05)
    server = await portastreams.start_server(idle_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    try:
        with anyio.fail_after(10):
            while not [r for r in caplog.records if r.levelno == logging.WARNING]:
                await anyio.sleep(0.02)
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "portastreams"
    assert warning.getMessage() == (
        f"{server!r} has connections waiting but is not accepting them: serve "
        "it with 'async with server:' or 'await server.serve_forever()' "
        "(portastreams servers accept connections only while served)"
    )


async def test_the_watchdog_ends_as_soon_as_the_server_is_served() -> None:
    """The task that watches a server nobody serves yet ends when serving
    starts, at once -- not at its next look a second later."""
    server = await portastreams.start_server(idle_handler, "127.0.0.1", 0)
    with anyio.fail_after(10):
        await anyio.sleep(0.05)
        assert "portastreams watchdog" in running_task_names()
        async with server:
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert "portastreams watchdog" not in running_task_names()


async def test_server_nobody_serves_nor_calls_does_not_warn(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not served yet is not a mistake while no client waits: only a
    # connection left waiting for two checks in a row is.
    monkeypatch.setattr(server_module, "NOT_SERVING_WARNING_DELAY", 0.05)
    server = await portastreams.start_server(idle_handler, "127.0.0.1", 0)
    started = time.monotonic()
    await anyio.sleep(0.4)
    # Each of the watchdog's looks at the listening socket is a poll that
    # does not wait: the event loop was never held up.
    assert time.monotonic() - started < 0.9
    port = server.sockets[0].getsockname()[1]
    async with server:
        # Served late: a client that comes now is accepted, and nothing warns.
        _reader, writer = await portastreams.open_connection("127.0.0.1", port)
        await anyio.sleep(0.2)
        writer.close()
        await writer.wait_closed()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_served_server_refuses_to_be_served_twice() -> None:
    server = await portastreams.start_server(idle_handler, "127.0.0.1", 0)
    async with server:
        with pytest.raises(RuntimeError) as info:
            await server.__aenter__()
    assert str(info.value) == "this server is already being served"


async def test_served_server_does_not_warn(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "NOT_SERVING_WARNING_DELAY", 0.05)
    server = await portastreams.start_server(idle_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        _reader, writer = await portastreams.open_connection("127.0.0.1", port)
        await anyio.sleep(0.3)
        writer.close()
        await writer.wait_closed()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- a dropped writer ------------------------------------------------------------------


async def test_dropped_writer_is_closed_with_a_resource_warning() -> None:
    """As asyncio's ``StreamWriter.__del__``: the peer sees EOF."""
    got_eof = anyio.Event()

    async def waits_for_eof(reader: StreamReader, writer: StreamWriter) -> None:
        assert await reader.read() == b"bye"
        got_eof.set()

    server = await portastreams.start_server(waits_for_eof, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            _reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"bye")
            with pytest.warns(ResourceWarning, match="unclosed"):  # noqa: PT031
                del writer
                gc.collect()
            await got_eof.wait()


# -- start_tls with a read waiting -------------------------------------------------------


async def test_start_tls_while_a_read_waits() -> None:
    """A read may be waiting while start_tls() runs (asyncio allows it)."""
    from certificates import client_context, server_context

    async def upgrades(reader: StreamReader, writer: StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"go\n")
        await writer.start_tls(server_context())
        writer.write(b"secret\n")
        await reader.read()

    server = await portastreams.start_server(upgrades, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with anyio.fail_after(10):
        async with server:
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"go\n"
            lines: list[bytes] = []

            async def read_line() -> None:
                lines.append(await reader.readline())

            async with anyio.create_task_group() as group:
                group.start_soon(read_line)
                await anyio.sleep(0.05)  # the read is waiting now
                await writer.start_tls(client_context(), server_hostname="localhost")
            assert lines == [b"secret\n"]
            assert writer.get_extra_info("ssl_object") is not None
            writer.close()
            await writer.wait_closed()


async def test_close_clients_lingers_until_the_client_is_done() -> None:
    """After a graceful ``close_clients()`` the server reads (and drops) what a
    client still sends until the client's own EOF, so a client that finishes
    its last message after seeing the server's EOF gets no reset."""
    started = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        started.set()
        await reader.read()

    with anyio.fail_after(10):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            await started.wait()
            server.close_clients()
            assert await reader.read() == b""  # the server's EOF
            await anyio.sleep(0.3)  # the server lingers meanwhile
            writer.write(b"one more thing\n")
            await writer.drain()
            writer.write_eof()
            await anyio.sleep(0.3)
            assert reader.exception() is None  # no reset
            writer.close()
            await writer.wait_closed()
