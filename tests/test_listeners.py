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
import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
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


def options_of(sockets: Any) -> list[tuple[object, ...]]:
    """Each socket's family, protocol, bound host and options.

    The options are ``SO_REUSEADDR``, ``SO_REUSEPORT`` and ``IPV6_V6ONLY``
    (-1 for a socket that is not IPv6); the port is left out.
    """
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
                sock.proto,
                sock.getsockname()[0],
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
        pytest.param("", {}, id="empty-host"),
        pytest.param(None, {}, id="no-host"),
        pytest.param(None, {"family": socket.AF_INET}, id="no-host-ipv4-only"),
        pytest.param(None, {"family": socket.AF_INET6}, id="no-host-ipv6-only"),
    ],
)
async def test_socket_options_match_asyncio(host: Any, options: Any) -> None:
    if (host is None or "::1" in host) and not _ipv6_available():
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
        assert ours == (
            "bound",
            [(int(socket.AF_INET), socket.IPPROTO_TCP, "127.0.0.1", 1, 0, -1)],
        )


async def test_an_absent_address_before_a_present_one() -> None:
    """The unavailable IPv4 address is tried first (families in order)."""
    if not _ipv6_available():
        pytest.fail("this machine has no IPv6 loopback")
    with anyio.fail_after(TIMEOUT):
        hosts = [ABSENT_ADDRESS, "::1"]
        ours = await bound_by(portastreams.start_server, idle, hosts, 0)
        if sys.version_info >= (3, 13):
            assert ours == await asyncio_bound(hosts, 0)
        assert ours == (
            "bound",
            [(int(socket.AF_INET6), socket.IPPROTO_TCP, "::1", 1, 0, 1)],
        )


async def test_sockets_are_in_address_family_order() -> None:
    """``server.sockets`` lists IPv4 before IPv6, the same on every run."""
    if not _ipv6_available():
        pytest.fail("this machine has no IPv6 loopback")
    with anyio.fail_after(TIMEOUT):
        for hosts in (["::1", "127.0.0.1"], ["127.0.0.1", "::1"]):
            server = await portastreams.start_server(idle, hosts, 0)
            async with server:
                families = [sock.family for sock in server.sockets]
            assert families == [socket.AF_INET, socket.AF_INET6]


async def echo_once(reader: StreamReader, writer: StreamWriter) -> None:
    writer.write(await reader.readline())


@pytest.mark.parametrize(
    "hosts", [None, ["127.0.0.1", "::1"]], ids=["every-address", "two-hosts"]
)
async def test_a_server_on_several_sockets_serves_on_each(hosts: Any) -> None:
    """Each listening socket has an accept loop of its own, all served at once."""
    if not _ipv6_available():
        pytest.fail("this machine has no IPv6 loopback")
    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_server(echo_once, hosts, 0)
        assert len(server.sockets) == 2
        async with server:
            for sock in server.sockets:
                loopback = "::1" if sock.family == socket.AF_INET6 else "127.0.0.1"
                reader, writer = await portastreams.open_connection(
                    loopback, sock.getsockname()[1]
                )
                writer.write(f"hello {loopback}\n".encode())
                assert await reader.readline() == f"hello {loopback}\n".encode()
                writer.close()
                await writer.wait_closed()
        assert list(server.sockets) == []


async def test_a_port_given_as_a_string() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_server(idle, "127.0.0.1", str(port))
        async with server:
            assert server.sockets[0].getsockname() == ("127.0.0.1", port)


async def no_addresses(*args: Any, **kwargs: Any) -> list[Any]:
    return []


async def asyncio_unresolved() -> tuple[object, ...]:
    loop: Any = asyncio.get_running_loop()
    loop.getaddrinfo = no_addresses
    return await bound_by(asyncio.start_server, asyncio_idle, "nowhere.invalid", 0)


async def test_a_name_that_resolves_to_nothing_matches_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with anyio.fail_after(TIMEOUT):
        theirs = await on_asyncio(asyncio_unresolved)
        monkeypatch.setattr(anyio, "getaddrinfo", no_addresses)
        ours = await bound_by(portastreams.start_server, idle, "nowhere.invalid", 0)
    assert ours == theirs
    assert ours[2] == "getaddrinfo('nowhere.invalid') returned empty list"


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


async def test_unix_server_refuses_to_replace_a_regular_file(
    sock_dir: Path,
) -> None:
    path = sock_dir / "precious"
    path.write_bytes(b"data")
    with anyio.fail_after(TIMEOUT), pytest.raises(FileExistsError) as caught:
        await portastreams.start_unix_server(idle, str(path))
    assert str(caught.value) == (
        f"{str(path)!r} exists and is not a socket; refusing to replace it"
    )
    assert path.read_bytes() == b"data"


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
    """A listening socket whose ``accept()`` follows a script first.

    Each ``accept()`` takes the next entry: an error to raise, or None to
    accept for real. ``nameless`` makes ``getsockname()`` fail.
    """

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.errors: list[OSError | None] = []
        self.calls = 0
        self.nameless = False

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error
        return super().accept()

    def getsockname(self) -> Any:
        if self.nameless:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return super().getsockname()


async def run_accept_loop(
    errors: list[OSError | None], connections: int, *, nameless: bool = False
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
    address = listener.getsockname()
    listener.nameless = nameless
    accepted: list[socket.socket] = []
    clients: list[socket.socket] = []
    try:
        with capture_logs() as records:
            await accept_all(listener, address, connections, accepted, clients)
    finally:
        for sock in [*accepted, *clients]:
            sock.close()
        listener.close()
    return (
        [(record.levelno, record.getMessage()) for record in records],
        len(accepted),
        listener.calls,
    )


@contextlib.contextmanager
def capture_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record of the ``portastreams`` logger, DEBUG included."""
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
        yield records
    finally:
        portastreams_logger.removeHandler(collect)
        portastreams_logger.setLevel(old_level)


async def accept_all(
    listener: ScriptedListener,
    address: Any,
    connections: int,
    accepted: list[socket.socket],
    clients: list[socket.socket],
) -> None:
    """Run the accept loop until ``connections`` clients are accepted, then close."""
    async with anyio.create_task_group() as group:
        group.start_soon(accept_connections, listener, 16, accepted.append)
        for _ in range(connections):
            client = socket.create_connection(address)
            clients.append(client)
            while len(accepted) < len(clients):
                await anyio.sleep(0.01)
        for connection, client in zip(accepted, clients, strict=True):
            assert connection.getpeername() == client.getsockname()
        # Closing the listening socket ends the loop.
        anyio.notify_closing(listener)
        listener.close()


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
    emfile = OSError(errno.EMFILE, "no more")
    with anyio.fail_after(TIMEOUT):
        records, accepted, _ = await run_accept_loop([emfile, None, emfile], 2)
    assert accepted == 2
    assert [level for level, _ in records] == [
        logging.ERROR,
        logging.INFO,
        logging.ERROR,
        logging.INFO,
    ]


async def test_a_socket_without_a_name_is_named_in_the_log() -> None:
    with anyio.fail_after(TIMEOUT):
        records, accepted, _ = await run_accept_loop(
            [OSError(errno.ENOMEM, "no memory")], 1, nameless=True
        )
    assert accepted == 1
    assert records[0][1].startswith("socket.accept() failed on a closed socket: ")
    assert records[-1][1] == "accepting connections again on a closed socket"


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
        capture_logs() as records,
    ):
        await accept_connections(listener, 4, handled.append)
    assert handled == []
    assert listener.fileno() == -1
    assert records == []


async def test_loops_on_sockets_closed_before_they_start_return() -> None:
    """A server closed before its accept loops ran: each loop returns at once.

    A closed socket's file descriptor is -1 on every socket, so waiting for
    it would mean waiting for fd -1 (twice, for two sockets).
    """
    first, second = socket.socket(), socket.socket()
    for sock in (first, second):
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        sock.setblocking(False)
        sock.close()
    handled: list[socket.socket] = []
    with anyio.fail_after(TIMEOUT), capture_logs() as records:
        async with anyio.create_task_group() as group:
            group.start_soon(accept_connections, first, 4, handled.append)
            group.start_soon(accept_connections, second, 4, handled.append)
    assert handled == []
    assert records == []


async def test_a_server_closed_at_once_after_serving_starts() -> None:
    if not _ipv6_available():
        pytest.fail("this machine has no IPv6 loopback")
    with anyio.fail_after(TIMEOUT):
        for _ in range(20):
            server = await portastreams.start_server(idle, ["127.0.0.1", "::1"], 0)
            async with server:
                pass
            assert not server.is_serving()


class OneFamilyMissing:
    """The ``socket`` module, on a host where one address family is missing."""

    def __init__(self, missing: socket.AddressFamily) -> None:
        self.missing = missing

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)

    def socket(self, family: int, *args: Any) -> socket.socket:
        if family == self.missing:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported")
        return socket.socket(family, *args)


async def test_a_family_the_host_lacks_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As asyncio's create_server: a socket() that fails skips that address."""
    if not _ipv6_available():
        pytest.fail("this machine has no IPv6 loopback")
    from portastreams import _listeners

    # IPv4 comes first (families in order), so the rest must still be tried.
    monkeypatch.setattr(_listeners, "socket", OneFamilyMissing(socket.AF_INET))
    with anyio.fail_after(TIMEOUT):
        ours = await bound_by(portastreams.start_server, idle, ["127.0.0.1", "::1"], 0)
    assert ours == (
        "bound",
        [(int(socket.AF_INET6), socket.IPPROTO_TCP, "::1", 1, 0, 1)],
    )
