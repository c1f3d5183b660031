"""Bad arguments to ``start_server`` / ``start_unix_server``: asyncio's errors.

Each bad call is made first on asyncio's own ``asyncio.start_server`` /
``asyncio.start_unix_server`` (on a plain asyncio loop in a worker thread):
portastreams must raise the same exception class with the same message, on
every backend, before it binds anything.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from certificates import server_context

import portastreams

pytestmark = pytest.mark.anyio

#: ``(id, what to call: a function of the library -- asyncio or portastreams
#: -- returning the coroutine)``
Call = Callable[[Any], Any]


async def _handler(reader: Any, writer: Any) -> None:
    writer.close()


def _bad_calls(
    directory: Path, udp: socket.socket, unix: socket.socket, tcp: socket.socket
) -> Iterator[tuple[str, Call]]:
    path = str(directory / "server.sock")
    yield (
        "unix-handshake-timeout-without-ssl",
        lambda lib: lib.start_unix_server(_handler, path, ssl_handshake_timeout=1.0),
    )
    yield (
        "unix-path-and-sock",
        lambda lib: lib.start_unix_server(_handler, path, sock=unix),
    )
    yield (
        "unix-sock-of-another-kind",
        lambda lib: lib.start_unix_server(_handler, sock=udp),
    )
    yield ("unix-nothing-to-listen-on", lambda lib: lib.start_unix_server(_handler))
    yield (
        "tcp-host-and-sock",
        lambda lib: lib.start_server(_handler, "127.0.0.1", sock=tcp),
    )
    yield (
        "tcp-port-and-sock",
        lambda lib: lib.start_server(_handler, port=0, sock=tcp),
    )
    yield (
        "tcp-sock-of-another-kind",
        lambda lib: lib.start_server(_handler, sock=udp),
    )
    yield (
        "tcp-handshake-timeout-without-ssl",
        lambda lib: lib.start_server(
            _handler, "127.0.0.1", 0, ssl_handshake_timeout=1.0
        ),
    )
    yield (
        "tcp-handshake-timeout-zero",
        lambda lib: lib.start_server(
            _handler, "127.0.0.1", 0, ssl=server_context(), ssl_handshake_timeout=0
        ),
    )
    yield (
        "tcp-ssl-true",
        lambda lib: lib.start_server(_handler, "127.0.0.1", 0, ssl=True),
    )
    yield (
        "tcp-ssl-not-a-context",
        lambda lib: lib.start_server(_handler, "127.0.0.1", 0, ssl="yes"),
    )
    yield (
        "unix-handshake-timeout-negative",
        lambda lib: lib.start_unix_server(
            _handler, path, ssl=server_context(), ssl_handshake_timeout=-1.0
        ),
    )


#: Documented differences (docs/porting.rst): asyncio starts a server that
#: fails every TLS connection; portastreams raises at once (with the message
#: asyncio gives for each connection, where it gives one).
FAILS_AT_ONCE: Final = {
    "tcp-ssl-not-a-context": (
        TypeError,
        "ssl argument must be an SSLContext or None, not str",
    ),
    "tcp-handshake-timeout-zero": (
        ValueError,
        "ssl_handshake_timeout should be a positive number, got 0",
    ),
    "unix-handshake-timeout-negative": (
        ValueError,
        "ssl_handshake_timeout should be a positive number, got -1.0",
    ),
}


def _outcome(call: Call, lib: Any) -> Any:
    async def attempt() -> Any:
        try:
            server = await call(lib)
        except Exception as exc:
            return type(exc), str(exc)
        server.close()
        return "started"

    return attempt


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    udp = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with udp, unix, tcp:
        yield udp, unix, tcp


async def test_bad_arguments_raise_what_asyncio_raises(
    sock_dir: Path, sockets: tuple[socket.socket, socket.socket, socket.socket]
) -> None:
    calls = list(_bad_calls(sock_dir, *sockets))
    expected: dict[str, Any] = {}

    def on_asyncio() -> None:
        async def run_all() -> None:
            for name, call in calls:
                expected[name] = await _outcome(call, asyncio)()

        asyncio.run(run_all())

    thread = threading.Thread(target=on_asyncio)
    thread.start()
    await anyio.to_thread.run_sync(thread.join, 30)
    assert len(expected) == len(calls), "asyncio's servers did not answer"
    # (asyncio's started server leaves its socket file before 3.13.)
    (sock_dir / "server.sock").unlink(missing_ok=True)
    with anyio.fail_after(10):
        for name, call in calls:
            observed = await _outcome(call, portastreams)()
            if name in FAILS_AT_ONCE:
                assert expected[name] == "started", f"asyncio's {name} changed"
                assert observed == FAILS_AT_ONCE[name], name
                continue
            assert expected[name] != "started", f"asyncio accepted {name}"
            assert observed == expected[name], name
    assert not (sock_dir / "server.sock").exists(), "nothing may be bound"


@pytest.mark.parametrize("function", ["start_server", "start_unix_server"])
async def test_an_unknown_keyword_names_the_function_called(
    function: str, sock_dir: Path
) -> None:
    # asyncio's message names its event loop's method (and differs on
    # uvloop); portastreams names the function the program called.
    start = getattr(portastreams, function)
    with pytest.raises(TypeError) as info:
        await start(_handler, str(sock_dir / "server.sock"), bogus=1)
    assert str(info.value) == f"{function}() got an unexpected keyword argument 'bogus'"


async def test_a_unix_server_on_a_given_socket_removes_its_file(
    sock_dir: Path,
) -> None:
    # As asyncio 3.13's cleanup_socket: the file of a socket bound by the
    # program is removed too, when the server closes.
    path = sock_dir / "given.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    server = await portastreams.start_unix_server(_handler, sock=sock)
    with anyio.fail_after(10):
        async with server:
            assert path.exists()
            reader, writer = await portastreams.open_unix_connection(str(path))
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
    assert not path.exists()
