"""Binding and accepting (``portastreams._listeners``), compared with asyncio.

Binding is compared with ``asyncio.start_server`` / ``start_unix_server``
run in the same test: the socket options of what is bound (``SO_REUSEPORT``,
``IPV6_V6ONLY``), an address that is not on this machine, a Unix address
already in use. The accept loop is driven with a listening socket whose
``accept()`` fails on cue, to check what it does with a connection aborted
before it was accepted and with running out of file descriptors.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from reference import on_asyncio, outcome

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams._listeners import ACCEPT_RETRY_DELAY, accept_connections

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0

#: An address from TEST-NET-1 (RFC 5737): never one of this machine's.
ABSENT_ADDRESS = "192.0.2.1"


async def idle(reader: StreamReader, writer: StreamWriter) -> None:
    await reader.read()


async def asyncio_idle(reader: asyncio.StreamReader, writer: Any) -> None:
    await reader.read()


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def options_of(sockets: Any) -> list[tuple[int, int, int, int]]:
    """``(family, SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY)`` of each socket."""
    shape = []
    for sock in sockets:
        v6only = (
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            if sock.family == socket.AF_INET6
            else -1
        )
        shape.append(
            (
                int(sock.family),
                int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0),
                int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0),
                int(v6only != 0) if v6only != -1 else -1,
            )
        )
    return sorted(shape)


async def bound_by(
    start: Callable[..., Awaitable[Any]], handler: Any, *args: Any, **kwargs: Any
) -> tuple[object, ...]:
    """What a server of ``start`` binds: the sockets' options, or the error."""
    try:
        server = await start(handler, *args, **kwargs)
    except OSError as exc:
        return ("error", *outcome(exc), exc.errno)
    try:
        return ("bound", options_of(server.sockets))
    finally:
        server.close()
        await server.wait_closed()


async def asyncio_bound(*args: Any, **kwargs: Any) -> tuple[object, ...]:
    return await on_asyncio(
        lambda: bound_by(asyncio.start_server, asyncio_idle, *args, **kwargs)
    )


@pytest.mark.parametrize(
    ("host", "options"),
    [
        pytest.param("127.0.0.1", {"reuse_port": True}, id="reuse-port"),
        pytest.param("127.0.0.1", {"reuse_port": False}, id="no-reuse-port"),
        pytest.param("::1", {}, id="ipv6"),
        pytest.param(["::1", "127.0.0.1"], {}, id="ipv6-and-ipv4"),
    ],
)
async def test_socket_options_match_asyncio(host: Any, options: Any) -> None:
    if "::1" in host and not _ipv6_available():
        pytest.fail("this machine has no IPv6 loopback")
    with anyio.fail_after(TIMEOUT):
        ours = await bound_by(portastreams.start_server, idle, host, 0, **options)
        assert ours == await asyncio_bound(host, 0, **options)


#: What CPython 3.13's ``start_server`` does with an address this machine does
#: not have (earlier versions raise the bind error instead of skipping it).
ABSENT_ONLY_313 = (
    "error",
    "OSError",
    f"could not bind on any address out of [({ABSENT_ADDRESS!r}, 0)]",
    None,
)


async def test_an_absent_address_is_skipped_as_asyncio_3_13() -> None:
    with anyio.fail_after(TIMEOUT):
        ours = await bound_by(portastreams.start_server, idle, ABSENT_ADDRESS, 0)
        if sys.version_info >= (3, 13):
            assert ours == await asyncio_bound(ABSENT_ADDRESS, 0)
        assert ours == ABSENT_ONLY_313


async def test_an_absent_address_next_to_a_present_one() -> None:
    with anyio.fail_after(TIMEOUT):
        hosts = [ABSENT_ADDRESS, "127.0.0.1"]
        ours = await bound_by(portastreams.start_server, idle, hosts, 0)
        if sys.version_info >= (3, 13):
            assert ours == await asyncio_bound(hosts, 0)
        assert ours == ("bound", [(int(socket.AF_INET), 1, 0, -1)])


async def test_unix_address_in_use_matches_asyncio() -> None:
    """An abstract Unix address already bound: asyncio's error and message."""
    name = f"\0portastreams-test-{id(object())}"
    with socket.socket(socket.AF_UNIX) as holder, anyio.fail_after(TIMEOUT):
        holder.bind(name)
        ours = await bound_by(portastreams.start_unix_server, idle, name)
        theirs = await on_asyncio(
            lambda: bound_by(asyncio.start_unix_server, asyncio_idle, name)
        )
    assert ours == theirs
    assert ours[-1] == errno.EADDRINUSE


async def test_unix_server_on_a_free_abstract_address() -> None:
    name = f"\0portastreams-test-{id(object())}"
    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_unix_server(idle, name)
        async with server:
            # uvloop cannot connect to an abstract address itself.
            client = socket.socket(socket.AF_UNIX)
            client.connect(name)
            _reader, writer = await portastreams.open_unix_connection(sock=client)
            writer.write(b"ping")
            writer.close()
            await writer.wait_closed()
            assert server.sockets[0].getsockname() == name.encode()


# -- the accept loop --------------------------------------------------------------


class ScriptedListener(socket.socket):
    """A listening socket whose ``accept()`` raises the scripted errors first."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.errors: list[OSError] = []
        self.calls = 0

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return super().accept()


async def run_accept_loop(
    errors: list[OSError], connections: int
) -> tuple[list[tuple[int, str]], int, int]:
    """Accept ``connections`` with ``errors`` scripted first.

    Returns the log records (level, message), how many connections the loop
    handed on, and the number of ``accept()`` calls.
    """
    listener = ScriptedListener()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    listener.errors = errors
    accepted: list[socket.socket] = []
    clients: list[socket.socket] = []
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collect = Collect(logging.DEBUG)
    portastreams_logger = logging.getLogger("portastreams")
    old_level = portastreams_logger.level
    portastreams_logger.addHandler(collect)
    portastreams_logger.setLevel(logging.DEBUG)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(accept_connections, listener, 16, accepted.append)
            for _ in range(connections):
                client = socket.create_connection(listener.getsockname())
                clients.append(client)
                while len(accepted) < len(clients):
                    await anyio.sleep(0.01)
            for connection, client in zip(accepted, clients, strict=True):
                assert connection.getpeername() == client.getsockname()
            # Closing the listening socket ends the loop.
            anyio.notify_closing(listener)
            listener.close()
    finally:
        portastreams_logger.removeHandler(collect)
        portastreams_logger.setLevel(old_level)
        for sock in [*accepted, *clients]:
            sock.close()
        listener.close()
    return (
        [(record.levelno, record.getMessage()) for record in records],
        len(accepted),
        listener.calls,
    )


@pytest.mark.parametrize("code", [errno.ECONNABORTED, errno.EPROTO, errno.EPERM])
async def test_a_connection_aborted_before_accept_is_skipped(code: int) -> None:
    with anyio.fail_after(TIMEOUT):
        records, accepted, calls = await run_accept_loop(
            [OSError(code, "gone"), OSError(code, "gone")], 2
        )
    assert accepted == 2
    assert records == []
    assert calls >= 4


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS])
async def test_running_out_of_resources_is_logged_once_per_burst(code: int) -> None:
    with anyio.fail_after(TIMEOUT):
        before = anyio.current_time()
        records, accepted, _ = await run_accept_loop(
            [OSError(code, "no more"), OSError(code, "no more")], 1
        )
        elapsed = anyio.current_time() - before
    assert accepted == 1
    # One ERROR for the burst, DEBUG for the retries, INFO once it is over.
    levels = [level for level, _ in records]
    assert levels == [logging.ERROR, logging.DEBUG, logging.INFO]
    message = records[0][1]
    assert message.startswith("socket.accept() failed on ('127.0.0.1', ")
    assert f"[Errno {code}] no more" in message
    assert message.endswith(f"retrying in {ACCEPT_RETRY_DELAY} s")
    assert records[2][1].startswith("accepting connections again on ('127.0.0.1', ")
    assert elapsed >= 2 * ACCEPT_RETRY_DELAY


async def test_two_bursts_are_two_errors() -> None:
    with anyio.fail_after(TIMEOUT):
        listener_errors = [OSError(errno.EMFILE, "no more")]
        records, accepted, _ = await run_accept_loop(listener_errors, 1)
        assert [level for level, _ in records] == [logging.ERROR, logging.INFO]
        records, accepted, _ = await run_accept_loop(
            [OSError(errno.EMFILE, "no more")], 1
        )
    assert accepted == 1
    assert [level for level, _ in records] == [logging.ERROR, logging.INFO]


async def test_the_loop_returns_when_the_socket_is_closed_while_accepting() -> None:
    """An accept error on a socket closed meanwhile ends the loop quietly."""

    class ClosingListener(ScriptedListener):
        def accept(self) -> tuple[socket.socket, Any]:
            anyio.notify_closing(self)
            self.close()
            raise OSError(errno.EBADF, "Bad file descriptor")

    listener = ClosingListener()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    handled: list[socket.socket] = []
    with (
        socket.create_connection(listener.getsockname()),
        anyio.fail_after(TIMEOUT),
    ):
        await accept_connections(listener, 4, handled.append)
    assert handled == []
    assert listener.fileno() == -1
