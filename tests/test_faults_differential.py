"""Failure points, compared with CPython's own asyncio streams in the same run.

Each scenario pairs a misbehaving *peer* (a blocking stdlib socket in a
thread: it closes, resets, stalls, hangs up mid-handshake, vanishes
mid-frame) with a *client script* written once against the asyncio stream
API. The script runs twice against identical peers: on CPython's
``asyncio.open_connection`` (the oracle, in a thread of its own) and on
``portastreams.open_connection`` on the backend under test. What the two
observe must be equal, except for the differences ``docs/porting.rst``
documents, which are asserted exactly here as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio
import pytest
from certificates import client_context, server_context

import portastreams

pytestmark = pytest.mark.anyio

Observation = dict[str, Any]
Opener = Callable[..., Awaitable[tuple[Any, Any]]]
Sleeper = Callable[[float], Awaitable[None]]

#: Exception classes named in observations, most specific first.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ssl.SSLCertVerificationError,
    ssl.SSLError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ConnectionRefusedError,
    ConnectionError,
    TimeoutError,
    OSError,
    ValueError,
    RuntimeError,
    EOFError,
)


def describe(exc: BaseException | None) -> str | None:
    """The observable kind of an exception: its most specific known class."""
    if exc is None:
        return None
    for kind in KNOWN_ERRORS:
        if isinstance(exc, kind):
            return kind.__name__
    return f"unexpected {type(exc).__name__}"


async def outcome(awaitable: Awaitable[Any]) -> Any:
    """The result of an await, or the kind of exception it raised."""
    try:
        result = await awaitable
    except Exception as exc:
        return ("raised", describe(exc))
    return ("returned", result)


# -- peers ---------------------------------------------------------------------


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def peer_close_after_hello(conn: socket.socket) -> None:
    conn.sendall(b"hello\n")
    conn.close()


def peer_reset_after_hello(conn: socket.socket) -> None:
    conn.sendall(b"hello\n")
    time.sleep(0.1)
    _reset(conn)


def peer_reset_after_reading(conn: socket.socket) -> None:
    conn.recv(10)
    _reset(conn)


def peer_half_close(conn: socket.socket) -> None:
    conn.sendall(b"from the peer")
    conn.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    conn.sendall(b"") if False else None
    conn.close()


def peer_half_close_then_stay(conn: socket.socket) -> None:
    """Half-close, read up to the client's EOF, then keep the socket a while."""
    conn.sendall(b"from the peer")
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(65536):
        pass
    time.sleep(1.0)


def peer_answer_eof_then_stay(conn: socket.socket) -> None:
    """Read up to the client's EOF, answer and half-close, then keep the socket."""
    while conn.recv(65536):
        pass
    conn.sendall(b"bye")
    conn.shutdown(socket.SHUT_WR)
    time.sleep(1.0)


def peer_vanish_mid_frame(conn: socket.socket) -> None:
    conn.sendall(struct.pack("!I", 100) + b"only part")
    conn.close()


def peer_hang_up_in_handshake(conn: socket.socket) -> None:
    conn.recv(65536)  # the ClientHello
    conn.close()


def peer_reset_in_handshake(conn: socket.socket) -> None:
    conn.recv(65536)
    _reset(conn)


def peer_silent(conn: socket.socket) -> None:
    conn.recv(65536)
    time.sleep(1.5)
    conn.close()


def peer_plain_then_hang_up(conn: socket.socket) -> None:
    conn.recv(5)  # "hello"
    conn.sendall(b"go ahead\n")
    conn.recv(65536)  # the ClientHello of start_tls
    conn.close()


def peer_clogged(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(0.5)  # never reads
    _reset(conn)


def peer_reads_late(conn: socket.socket) -> None:
    """Read nothing for a while (the client's writes back up), then everything."""
    time.sleep(0.5)
    while conn.recv(65536):
        pass


def peer_silent_until_eof(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def peer_reset_unannounced(conn: socket.socket) -> None:
    time.sleep(0.2)
    _reset(conn)


#: What each peer_sends_then_reads() saw, by its port.
PEER_SAW: dict[int, bytes | str] = {}


def peer_sends_then_reads(conn: socket.socket) -> None:
    """Send more than one receive, never read by the client; then report what
    the client's close looked like: its bytes then EOF, or a reset."""
    port = conn.getsockname()[1]
    conn.sendall(b"u" * 100_000)
    received = b""
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except ConnectionResetError:
        PEER_SAW[port] = "reset"
    else:
        PEER_SAW[port] = received


#: What a TLS peer sends before it closes: more than one receive buffer
#: (64 KiB) and than the reader's pause threshold, within what loopback
#: socket buffers hold, so that the close arrives while the bytes still wait.
TLS_PAYLOAD = bytes(range(256)) * 1536


def _tls_send_then(conn: socket.socket, *, close_notify: bool) -> None:
    with server_context().wrap_socket(conn, server_side=True) as tls:
        tls.sendall(TLS_PAYLOAD)
        if close_notify:
            _send_close_notify(tls)
        # Then the socket's end at once, without waiting for the client's
        # close_notify (as openssl s_server does); without close_notify
        # before it, a ragged EOF.


def _send_close_notify(tls: ssl.SSLSocket) -> None:
    tls.setblocking(False)
    while True:
        try:
            tls.unwrap()
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], 10)
        except (ssl.SSLWantReadError, OSError):
            return  # sent; the client's answer is not awaited
        else:
            return


def peer_tls_send_then_close_notify(conn: socket.socket) -> None:
    _tls_send_then(conn, close_notify=True)


def peer_tls_send_then_ragged_close(conn: socket.socket) -> None:
    _tls_send_then(conn, close_notify=False)


def peer_start_tls_send_then_close_notify(conn: socket.socket) -> None:
    conn.recv(5)  # "hello"
    conn.sendall(b"go ahead\n")
    _tls_send_then(conn, close_notify=True)


def peer_tls_corrupt_record(conn: socket.socket) -> None:
    """A line over TLS, then a record that fails its integrity check."""
    with server_context().wrap_socket(conn, server_side=True) as tls:
        _send_then_corrupt_record(tls)


def peer_start_tls_corrupt_record(conn: socket.socket) -> None:
    """``peer_tls_corrupt_record`` after a plain-text go-ahead (STARTTLS)."""
    conn.recv(5)  # "hello"
    conn.sendall(b"go ahead\n")
    with server_context().wrap_socket(conn, server_side=True) as tls:
        _send_then_corrupt_record(tls)


def _send_then_corrupt_record(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"hello\n")
    time.sleep(0.3)  # apart: asyncio drops the line if both come at once
    with socket.socket(fileno=os.dup(tls.fileno())) as raw:
        raw.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))
    time.sleep(0.5)


def peer_plain_then_silent_handshake(conn: socket.socket) -> None:
    conn.recv(5)  # "hello"
    conn.sendall(b"go ahead\n")
    conn.recv(65536)  # the ClientHello of start_tls, never answered
    conn.settimeout(2)
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


@contextlib.contextmanager
def peer(behaviour: Callable[[socket.socket], None]) -> Iterator[int]:
    """A listening socket whose first connection gets ``behaviour``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        with contextlib.suppress(OSError):
            behaviour(conn)
        with contextlib.suppress(OSError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()


# -- client scripts ------------------------------------------------------------


async def _close_whatever_happened(writer: Any) -> None:
    """Close, and wait for the close; an error it reports is not observed."""
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def state_after_peer_close(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    reader, writer = await open_("127.0.0.1", port)
    await sleep(0.3)  # no read: what does the connection say by itself?
    seen = {
        "at_eof before reading": reader.at_eof(),
        "exception": describe(reader.exception()),
        "is_closing": writer.is_closing(),
        # (After the public questions: on trio they are what takes the
        # bytes from the socket, see test_pulled_bytes_wait_in_the_socket.)
        "buffered": len(reader._buffer),
    }
    seen["readline"] = await outcome(reader.readline())
    seen["at_eof"] = reader.at_eof()
    seen["read"] = await outcome(reader.read())
    writer.close()
    seen["drain after close"] = await outcome(writer.drain())
    await writer.wait_closed()
    return seen


async def state_after_peer_reset(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    reader, writer = await open_("127.0.0.1", port)
    await sleep(0.5)
    seen = {
        "at_eof": reader.at_eof(),
        "exception": describe(reader.exception()),
        "is_closing": writer.is_closing(),
    }
    writer.write(b"into the void")
    seen["drain"] = await outcome(writer.drain())
    seen["wait_closed"] = await outcome(writer.wait_closed())
    return seen


async def reset_after_user_exception(
    open_: Opener, sleep: Sleeper, port: int, *, data_buffered: bool
) -> Observation:
    """The program calls ``reader.set_exception()``, then the peer resets."""
    reader, writer = await open_("127.0.0.1", port)
    if data_buffered:
        await sleep(0.05)  # the peer's hello is in the buffer
    else:
        writer.write(b"0123456789")  # the peer resets once it has read this
    reader.set_exception(ValueError("set by the program"))
    await sleep(0.4)
    seen = {"exception": repr(reader.exception()), "is_closing": writer.is_closing()}
    seen["read"] = await outcome(reader.read())
    await _close_whatever_happened(writer)
    return seen


async def close_after_user_exception(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    """The program calls ``reader.set_exception()``, then closes the writer."""
    reader, writer = await open_("127.0.0.1", port)
    reader.set_exception(ValueError("set by the program"))
    writer.close()
    await writer.wait_closed()
    return {
        "at_eof": reader.at_eof(),
        "exception": repr(reader.exception()),
        "read": await outcome(reader.read()),
    }


#: More than a socket and the write buffer hold while the peer does not read.
BACKED_UP = 4 * 1024 * 1024


async def _read_woken_by(
    poke: Callable[[Any], None], reader: Any, sleep: Sleeper
) -> Any:
    """What a ``readline()`` waiting for data returns once ``poke(reader)``."""
    seen: list[Any] = []

    async def read() -> None:
        seen.append(await outcome(reader.readline()))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(read)
        await sleep(0.1)  # the read waits for the socket
        poke(reader)
        with anyio.move_on_after(5):
            while not seen:
                await sleep(0.01)
        task_group.cancel_scope.cancel()
    return seen[0] if seen else "still waiting"


async def set_exception_wakes_read(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    """``set_exception()`` from another task wakes a read that waits, while a
    backed-up write waits for room; the write still goes out whole."""
    reader, writer = await open_("127.0.0.1", port)
    writer.write(b"w" * BACKED_UP)
    seen: Observation = {
        "read": await _read_woken_by(
            lambda r: r.set_exception(ValueError("set by the program")), reader, sleep
        )
    }
    with anyio.move_on_after(10):
        while writer.transport.get_write_buffer_size():
            await sleep(0.01)
    seen["write buffer"] = writer.transport.get_write_buffer_size()
    seen["is_closing"] = writer.is_closing()
    seen["drain"] = await outcome(writer.drain())
    writer.close()
    await writer.wait_closed()
    return seen


async def feed_eof_wakes_read(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    """``feed_eof()`` from another task ends a read that waits."""
    reader, writer = await open_("127.0.0.1", port)
    seen: Observation = {
        "read": await _read_woken_by(lambda r: r.feed_eof(), reader, sleep)
    }
    seen["at_eof"] = reader.at_eof()
    seen["is_closing"] = writer.is_closing()
    writer.close()
    await writer.wait_closed()
    return seen


async def reset_while_nobody_reads(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    """The peer resets while the program only waits for the connection to close."""
    reader, writer = await open_("127.0.0.1", port)
    seen: Observation = {"wait_closed": "still waiting"}
    with anyio.move_on_after(5):
        seen["wait_closed"] = await outcome(writer.wait_closed())
    seen["exception"] = describe(reader.exception())
    seen["is_closing"] = writer.is_closing()
    return seen


async def close_with_unread_bytes(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    """The program never reads what the peer sent, writes and closes: the peer
    gets the bytes and EOF, not a reset (the transport read them)."""
    _reader, writer = await open_("127.0.0.1", port)
    await sleep(0.2)  # the peer's bytes have arrived
    writer.write(b"bye")
    writer.close()
    await writer.wait_closed()
    with anyio.move_on_after(5):
        while port not in PEER_SAW:
            await sleep(0.01)
    return {"peer saw": PEER_SAW.pop(port, "nothing")}


async def write_until_reset(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    reader, writer = await open_("127.0.0.1", port)
    writer.write(b"0123456789")
    error = None
    for _ in range(1000):
        writer.write(b"x" * 65536)
        try:
            await writer.drain()
        except Exception as exc:
            error = exc
            break
        await sleep(0.001)
    seen = {
        "drain": describe(error),
        "is_closing": writer.is_closing(),
        "exception": describe(reader.exception()),
    }
    await _close_whatever_happened(writer)
    return seen


async def half_close(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    reader, writer = await open_("127.0.0.1", port)
    seen: Observation = {"read": await outcome(reader.read())}
    seen["at_eof"] = reader.at_eof()
    seen["is_closing"] = writer.is_closing()
    seen["is_reading"] = writer.transport.is_reading()
    writer.write(b"still writable")
    seen["drain"] = await outcome(writer.drain())
    seen["can_write_eof"] = writer.can_write_eof()
    writer.write_eof()
    writer.close()
    await writer.wait_closed()
    return seen


async def both_directions_shut(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    """The peer half-closes first, then the client: the connection stays open
    (asyncio's transports close only on ``close()``)."""
    reader, writer = await open_("127.0.0.1", port)
    seen: Observation = {"read": await outcome(reader.read())}
    writer.write_eof()
    return await _state_when_both_shut(seen, reader, writer, sleep)


async def eof_answered(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    """The client half-closes first, then the peer answers and half-closes."""
    reader, writer = await open_("127.0.0.1", port)
    writer.write(b"request")
    writer.write_eof()
    seen: Observation = {"read": await outcome(reader.read())}
    return await _state_when_both_shut(seen, reader, writer, sleep)


async def _state_when_both_shut(
    seen: Observation, reader: Any, writer: Any, sleep: Sleeper
) -> Observation:
    await sleep(0.3)
    seen["is_closing"] = writer.is_closing()
    seen["at_eof"] = reader.at_eof()
    seen["drain"] = await outcome(writer.drain())
    writer.close()
    await writer.wait_closed()
    # Our own close of a connection shut both ways is no error.
    seen["exception_after_close"] = describe(reader.exception())
    seen["read_after_close"] = await outcome(reader.read())
    return seen


async def vanish_mid_frame(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    reader, writer = await open_("127.0.0.1", port)
    (size,) = struct.unpack("!I", await reader.readexactly(4))
    seen: Observation = {}
    try:
        await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        seen = {"partial": exc.partial, "expected": exc.expected, "message": str(exc)}
    seen["then"] = await outcome(reader.read())
    writer.close()
    await writer.wait_closed()
    return seen


async def tls_connect(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    try:
        _, writer = await open_(
            "127.0.0.1",
            port,
            ssl=client_context(),
            server_hostname="localhost",
            ssl_handshake_timeout=1.0,
        )
    except Exception as exc:
        return {"open_connection": ("raised", describe(exc)), "message": str(exc)}
    writer.close()
    return {"open_connection": "returned"}


async def tls_connect_times_out(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    """``tls_connect``, and the timeout's message (it names the timeout)."""
    try:
        await open_(
            "127.0.0.1",
            port,
            ssl=client_context(),
            server_hostname="localhost",
            ssl_handshake_timeout=1.0,
        )
    except Exception as exc:
        return {"open_connection": ("raised", describe(exc)), "message": str(exc)}
    return {"open_connection": "returned"}


async def start_tls_hang_up(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    reader, writer = await open_("127.0.0.1", port)
    writer.write(b"hello")
    seen: Observation = {"line": await reader.readline()}
    seen["start_tls"] = await outcome(
        writer.start_tls(client_context(), server_hostname="localhost")
    )
    seen["is_closing"] = writer.is_closing()
    await _close_whatever_happened(writer)
    return seen


async def tls_read_after_peer_left(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    reader, writer = await open_(
        "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
    )
    await sleep(0.5)  # no read while the peer sends and leaves
    return await _read_to_the_end(reader, writer)


async def _ready_for_start_tls(open_: Opener, port: int) -> tuple[Any, Any]:
    """Connect, say hello, and read the peer's go-ahead for TLS."""
    reader, writer = await open_("127.0.0.1", port)
    writer.write(b"hello")
    assert await reader.readline() == b"go ahead\n"
    return reader, writer


async def start_tls_read_after_peer_left(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    reader, writer = await _ready_for_start_tls(open_, port)
    await writer.start_tls(client_context(), server_hostname="localhost")
    await sleep(0.5)
    return await _read_to_the_end(reader, writer)


async def tls_corrupt_record(open_: Opener, sleep: Sleeper, port: int) -> Observation:
    reader, writer = await open_(
        "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
    )
    return await _read_past_a_corrupt_record(reader, writer)


async def start_tls_corrupt_record(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    reader, writer = await _ready_for_start_tls(open_, port)
    await writer.start_tls(client_context(), server_hostname="localhost")
    return await _read_past_a_corrupt_record(reader, writer)


async def _read_past_a_corrupt_record(reader: Any, writer: Any) -> Observation:
    seen: Observation = {"line": await reader.readline()}
    try:
        seen["read"] = ("returned", await reader.read())
    except Exception as exc:
        seen["read"] = ("raised", describe(exc), getattr(exc, "reason", None))
    seen["exception"] = describe(reader.exception())
    seen["is_closing"] = writer.is_closing()
    await _close_whatever_happened(writer)
    return seen


async def start_tls_closed_during_handshake(
    open_: Opener, sleep: Sleeper, port: int
) -> Observation:
    """Another task closes the writer while ``start_tls()`` waits for the peer."""
    reader, writer = await _ready_for_start_tls(open_, port)
    seen: Observation = {}

    async def upgrade() -> None:
        seen["start_tls"] = await outcome(
            writer.start_tls(
                client_context(), server_hostname="localhost", ssl_handshake_timeout=5
            )
        )

    async with anyio.create_task_group() as task_group:  # (on asyncio.run too)
        task_group.start_soon(upgrade)
        await sleep(0.2)
        writer.close()
    try:
        seen["is_closing"] = ("returned", writer.is_closing())
    except Exception as exc:
        seen["is_closing"] = ("raised", describe(exc))
    seen["read"] = "waiting"
    with anyio.move_on_after(1):
        seen["read"] = await outcome(reader.read())
    if getattr(writer, "_transport", True) is None:
        # CPython's writer, left without a transport: its __del__ would fail.
        writer._transport = _Closed()
    return seen


class _Closed:
    def is_closing(self) -> bool:
        return True


async def _read_to_the_end(reader: Any, writer: Any) -> Observation:
    received = bytearray()
    error = None
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except Exception as exc:
        error = exc
    seen: Observation = {
        "received": len(received),
        "intact": received == TLS_PAYLOAD,
        "error": describe(error),
        "at_eof": reader.at_eof(),
    }
    await _close_whatever_happened(writer)
    return seen


SCENARIOS: dict[str, tuple[Callable[[socket.socket], None], Any]] = {
    "peer-close": (peer_close_after_hello, state_after_peer_close),
    "peer-reset": (peer_reset_after_hello, state_after_peer_reset),
    "reset-during-writes": (peer_reset_after_reading, write_until_reset),
    "close-after-user-exception": (
        peer_reset_after_reading,
        close_after_user_exception,
    ),
    "reset-after-user-exception": (
        peer_reset_after_reading,
        partial(reset_after_user_exception, data_buffered=False),
    ),
    "reset-after-user-exception-with-data": (
        peer_reset_after_hello,
        partial(reset_after_user_exception, data_buffered=True),
    ),
    "set-exception-wakes-read": (peer_reads_late, set_exception_wakes_read),
    "feed-eof-wakes-read": (peer_silent_until_eof, feed_eof_wakes_read),
    "reset-while-nobody-reads": (peer_reset_unannounced, reset_while_nobody_reads),
    "close-with-unread-bytes": (peer_sends_then_reads, close_with_unread_bytes),
    "half-close": (peer_half_close, half_close),
    "both-directions-shut": (peer_half_close_then_stay, both_directions_shut),
    "eof-answered": (peer_answer_eof_then_stay, eof_answered),
    "vanish-mid-frame": (peer_vanish_mid_frame, vanish_mid_frame),
    "tls-hang-up-in-handshake": (peer_hang_up_in_handshake, tls_connect),
    "tls-reset-in-handshake": (peer_reset_in_handshake, tls_connect),
    "tls-handshake-timeout": (peer_silent, tls_connect_times_out),
    "start-tls-hang-up": (peer_plain_then_hang_up, start_tls_hang_up),
    "tls-data-then-close-notify": (
        peer_tls_send_then_close_notify,
        tls_read_after_peer_left,
    ),
    "tls-data-then-ragged-close": (
        peer_tls_send_then_ragged_close,
        tls_read_after_peer_left,
    ),
    "start-tls-data-then-close-notify": (
        peer_start_tls_send_then_close_notify,
        start_tls_read_after_peer_left,
    ),
    "tls-corrupt-record": (peer_tls_corrupt_record, tls_corrupt_record),
    "start-tls-corrupt-record": (
        peer_start_tls_corrupt_record,
        start_tls_corrupt_record,
    ),
    "start-tls-closed-during-handshake": (
        peer_plain_then_silent_handshake,
        start_tls_closed_during_handshake,
    ),
}

#: Differences from asyncio that docs/porting.rst documents, as
#: ``{scenario: {key: (asyncio's observation, portastreams' observation)}}``.
DOCUMENTED: dict[str, dict[str, tuple[Any, Any]]] = {
    # wait_closed() never raises for a peer that left (asyncio re-raises the
    # connection error there).
    "peer-reset": {
        "wait_closed": (("raised", "ConnectionResetError"), ("returned", None))
    },
    "reset-while-nobody-reads": {
        "wait_closed": (("raised", "ConnectionResetError"), ("returned", None))
    },
    # CPython's writer breaks here: its start_tls() fails with an
    # AttributeError (the event loop's start_tls() returns None), and the
    # writer is left without a transport; reads hang. portastreams raises
    # what a peer's hang-up raises, and the connection is closed.
    "start-tls-closed-during-handshake": {
        "start_tls": (
            ("raised", "unexpected AttributeError"),
            ("raised", "ConnectionResetError"),
        ),
        "is_closing": (
            ("raised", "unexpected AttributeError"),
            ("returned", True),
        ),
        "read": ("waiting", ("returned", b"")),
    },
}
if sys.version_info < (3, 11):
    # Python 3.10's TLS transport does not notice a connection's failure
    # (is_closing() stays false); portastreams runs its own TLS layer there
    # (docs/porting.rst).
    DOCUMENTED["tls-corrupt-record"] = {"is_closing": (False, True)}


def oracle(scenario: str) -> Observation:
    """What CPython's own asyncio streams observe in ``scenario``."""
    behaviour, script = SCENARIOS[scenario]

    async def run() -> Observation:
        with peer(behaviour) as port:
            observation: Observation = await script(
                asyncio.open_connection, asyncio.sleep, port
            )
            return observation

    return asyncio.run(run())


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                name.startswith("start-tls") and sys.version_info < (3, 11),
                reason="asyncio's StreamWriter.start_tls() is new in 3.11: no oracle",
            ),
        )
        for name in SCENARIOS
    ],
)
async def test_failure_point_matches_asyncio(
    scenario: str, anyio_backend_name: str, anyio_backend_options: dict[str, Any]
) -> None:
    behaviour, script = SCENARIOS[scenario]
    with anyio.fail_after(30):
        expected = await anyio.to_thread.run_sync(oracle, scenario)
        with peer(behaviour) as port:
            observed = await script(portastreams.open_connection, anyio.sleep, port)
    if anyio_backend_options.get("use_uvloop") and "is_reading" in expected:
        # uvloop's own transport (asyncio's streams on uvloop use it too)
        # stops "reading" at the peer's EOF; asyncio's keeps saying True.
        assert (expected.pop("is_reading"), observed.pop("is_reading")) == (
            True,
            False,
        )
    documented = DOCUMENTED.get(scenario, {})
    for key, (theirs, ours) in documented.items():
        assert expected.pop(key) == theirs, f"asyncio's {key} changed"
        assert observed.pop(key) == ours, f"portastreams' {key}"
    assert observed == expected
