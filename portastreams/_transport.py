"""``StreamTransport``: an asyncio transport over an AnyIO byte stream.

This is the connection engine of every path that does not have an asyncio
event loop's own transport underneath (everything on trio, and
:func:`portastreams.wrap_stream` on any backend). It does what asyncio's
selector and SSL transports do, so that the reader and writer on top behave
the same on every path:

* **Eager reading.** A *receiver* task reads whatever arrives and feeds the
  :class:`~portastreams.StreamReader` (feed mode), pausing while the reader
  holds more than ``2 * limit`` bytes, exactly as asyncio's transport and
  ``StreamReaderProtocol`` do. A peer's close or reset is therefore seen at
  once -- ``reader.at_eof()``, ``reader.exception()``, ``writer.is_closing()``
  answer without a read -- and a socket is never closed with unread data in
  it (which would turn its close into a reset and lose the peer's data).
* **Pulled reading** on a client's plain trio socket instead: a read that
  needs more receives in its own task (:meth:`StreamTransport._pull`), with
  no receiver task and no task switch. The questions above take what the
  socket has first (:meth:`StreamTransport._poll`), a close takes what is
  left unread, and where only a background reader sees the peer's news
  (``wait_closed()`` while open, a graceful close, ``start_tls``) a receiver
  takes over for the rest of the connection.
* **Synchronous writes.** ``write()`` hands the data to the socket at once
  when nothing is queued and the stream is a plain trio socket (a direct,
  non-blocking ``send()``); whatever is left is queued, and a *flusher* task
  sends the queue, then a pending EOF, then a pending close, in order.
* **TLS as a state machine.** Over TLS the transport owns a sans-I/O
  :class:`~portastreams._tls.TLSSession`: the receiver decrypts and the
  writer encrypts synchronously, so only one task at a time touches the SSL
  object and ciphertext leaves in the order it was made. ``start_tls``
  installs a session in the middle of a connection.

The receiver and flusher are *detached* tasks (see :mod:`portastreams._backend`)
because ``write()``/``close()`` are synchronous and have no task group.
Failures are the builtin ``OSError`` family, AnyIO's errors as ``__cause__``;
an exception that is not a connection failure (a bug) is logged, never
disguised as a reset.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import ByteStream, SocketAttribute

from ._backend import Backend, spawn_detached
from ._exceptions import connection_error_from
from ._extra import connection_extra_info, tls_extra_attributes, tls_extra_info
from ._receive_buffer import thread_receive_view
from ._tls import (
    HandshakeTimeoutError,
    TLSSession,
    handshake_timeout,
    shutdown_timeout,
)

if TYPE_CHECKING:
    from ._reader import StreamReader

__all__ = ["StreamTransport"]

logger = logging.getLogger("portastreams")

#: asyncio's default high-water mark for write buffers.
DEFAULT_HIGH_WATER: Final = 64 * 1024
DEFAULT_LOW_WATER: Final = DEFAULT_HIGH_WATER // 4
#: The most the flusher hands to one ``send()``: small enough that ``drain()``
#: waiters see the buffer shrink, large enough to amortise the await.
MAX_SEND_SIZE: Final = 256 * 1024
#: How much the receiver asks for at a time (from a socket it reads
#: directly, into the thread's receive buffer of this size).
RECEIVE_SIZE: Final = 256 * 1024
#: Receives in a row, from a socket that always has more, before the
#: receiver yields to other tasks.
MAX_RECEIVES_WITHOUT_YIELD: Final = 16
#: How often a client's pulled read asks the socket after a short receive,
#: yielding before each ask, before it sleeps on the socket (a server
#: connection's asks once; see StreamTransport._pull).
CLIENT_ASKS_AFTER_A_SHORT_RECEIVE: Final = 3
#: Bytes the socket took straight from ``write()`` after which ``drain()``
#: yields to other tasks once, as a trio ``send_all()`` would have.
SENT_WITHOUT_YIELD: Final = 64 * 1024
#: How long closing a stream may take before it is closed forcefully.
CLOSE_TIMEOUT: Final = 30.0

#: asyncio's socket transports join ``writelines()`` items up to Python 3.11.
JOINS_WRITELINES: Final = sys.version_info < (3, 12)
#: Errors that mean "the connection is gone", as opposed to a bug.
CONNECTION_FAILURES: Final = (
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ssl.SSLError,
)


class State(enum.Enum):
    """Where a transport is in its life; it only moves forward."""

    #: Reading and writing.
    OPEN = "open"
    #: ``close()`` was called, or the connection failed: sending what is
    #: queued (unless aborted or failed), then closing the stream.
    CLOSING = "closing"
    #: The stream is closed.
    CLOSED = "closed"


def direct_socket(stream: ByteStream, backend: Backend) -> socket.socket | None:
    """The socket a transport may use directly, bypassing the stream layer.

    Only AnyIO's own trio socket streams qualify: their ``send()`` and
    ``receive()`` are plain socket calls, so doing them ourselves while the
    stream is not used keeps the byte order. AnyIO's asyncio streams buffer
    inside an asyncio transport, and other streams transform the data.
    """
    if backend != "trio" or type(stream).__module__ != "anyio._backends._trio":
        return None
    if not isinstance(stream, anyio.abc.SocketStream):
        return None
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    return sock


class StreamTransport:
    """One connection over an AnyIO byte stream, with asyncio's transport API.

    It owns ``stream``: closing the transport closes the stream, both
    directions. ``writer.transport`` is this object. Call :meth:`start` once
    the reader is attached; :meth:`handshake` (before or after ``start``)
    runs a TLS handshake over the stream.
    """

    # One per connection: no instance dict.
    __slots__ = (
        "_aborted",
        "_backend",
        "_closed_event",
        "_drain_waiters",
        "_eof_requested",
        "_eof_sent",
        "_error",
        "_extra",
        "_flush_scope",
        "_flushing",
        "_high_water",
        "_idle_waiters",
        "_in_flight",
        "_linger_timeout",
        "_low_water",
        "_peer_eof",
        "_peer_eof_event",
        "_pending_plaintext",
        "_pull_done",
        "_pull_interrupted",
        "_pull_parked",
        "_pulled",
        "_pulling",
        "_queue",
        "_read_paused",
        "_read_resumed",
        "_reader",
        "_receive_scope",
        "_receiver_done",
        "_receives_without_wait",
        "_receiving",
        "_sent_without_yield",
        "_server_side",
        "_shutdown_timeout",
        "_socket",
        "_state",
        "_stream",
        "_stream_closing",
        "_tls",
        "_tls_error",
        "_tls_ready",
        "_write_paused",
    )

    def __init__(
        self,
        stream: ByteStream,
        backend: Backend,
        reader: StreamReader,
        *,
        server_side: bool,
    ) -> None:
        self._stream: Final = stream
        self._backend: Final = backend
        self._reader: Final = reader
        self._server_side: Final = server_side
        self._socket = direct_socket(stream, backend)
        if self._socket is not None and _trio is None:
            _bind_trio()  # (every path that uses the socket uses trio)
        self._tls: TLSSession | None = None
        self._tls_ready: anyio.Event | None = None
        self._tls_error: BaseException | None = None
        # Written during a TLS handshake (a bytearray then; b"" needs none).
        self._pending_plaintext: bytes | bytearray = b""
        self._extra: dict[str, object] = connection_extra_info(stream)
        self._state = State.OPEN
        self._error: BaseException | None = None
        self._aborted = False
        self._peer_eof = False
        self._peer_eof_event: anyio.Event | None = None
        # Writing.
        self._queue = bytearray()
        self._sent_without_yield = 0
        self._in_flight = 0
        self._eof_requested = False
        self._eof_sent = False
        self._flushing = False
        self._flush_scope: anyio.CancelScope | None = None
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_LOW_WATER  # (one int for every connection)
        self._write_paused = False
        # (Lists made when first needed: most connections never wait.)
        self._drain_waiters: list[anyio.Event] | None = None
        self._closed_event: anyio.Event | None = None
        self._idle_waiters: list[anyio.Event] | None = None
        self._shutdown_timeout = shutdown_timeout(None)
        self._linger_timeout: float | None = None
        self._stream_closing = False
        # Reading.
        self._receiving = False
        self._receive_scope: Any = None  # a trio or AnyIO cancel scope
        self._read_paused = False
        self._read_resumed: anyio.Event | None = None
        self._receiver_done: anyio.Event | None = None
        self._pulled = False
        self._pulling = False
        self._pull_parked = False
        self._pull_interrupted = False
        self._pull_done: anyio.Event | None = None
        self._receives_without_wait = 0
        reader.set_transport(self)

    # -- starting ------------------------------------------------------------

    def start(self) -> None:
        """Start reading (once): pulled by the reads of a plain socket on
        trio, client or server side, eagerly by a receiver task otherwise.

        A pulled read receives in the reading task itself: no task switch
        between the socket and the read, and no receiver task (with its
        frames and its wait on the socket) on every idle connection.
        """
        if self._receiving or self._pulled or self._state is not State.OPEN:
            return
        if self._socket is not None and self._tls is None:
            self._pulled = True
            self._reader._pull_from(self)
            return
        self._receive_eagerly()

    def _receive_eagerly(self) -> None:
        """Hand reading over to a receiver task, for the rest of the connection."""
        if self._pulled:
            self._pulled = False
            self._reader._pull_from(None)
        if not self._receiving and not self._stream_closing:
            self._receiving = True
            spawn_detached(self._backend, self._receive_loop, "portastreams receiver")

    async def handshake(
        self,
        context: ssl.SSLContext,
        *,
        hostname: str | None,
        timeout: float | None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        """Switch to TLS and complete the handshake; bytes after it are encrypted.

        Everything written before is sent first, in plain text; bytes the
        reader already buffered stay first in line. On failure the connection
        is aborted and the error raised: the certificate or protocol
        ``ssl.SSLError``, ``ConnectionResetError`` if the peer hung up, or
        :class:`~portastreams._tls.HandshakeTimeoutError`.
        """
        deadline = handshake_timeout(timeout)
        self._shutdown_timeout = shutdown_timeout(ssl_shutdown_timeout)
        if self._tls is not None:
            raise RuntimeError("the connection already uses TLS")
        await self._wait_until_flushed()
        self._raise_if_closing()
        session = self._tls = TLSSession(
            context, server_side=self._server_side, hostname=hostname
        )
        ready = self._tls_ready = anyio.Event()
        try:
            with anyio.move_on_after(deadline) as scope:
                self._advance_handshake()
                self._receive_eagerly()
                await ready.wait()
        except BaseException:
            await self._abort_and_wait()
            raise
        if scope.cancelled_caught:
            await self._abort_and_wait()
            raise HandshakeTimeoutError(deadline)
        if self._tls_error is not None:
            await self._abort_and_wait()
            raise self._tls_error
        assert session.handshake_done

    async def _abort_and_wait(self) -> None:
        """Abort, and return once the stream is closed (a failed handshake)."""
        self.abort()
        with anyio.CancelScope(shield=True):
            await self._wait_closed()

    # -- asyncio.WriteTransport ----------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending, in order; never blocks.

        As asyncio's transports: ``TypeError`` for non-bytes-like data,
        ``RuntimeError`` after :meth:`write_eof`, and data written after the
        connection was closed or lost is dropped (``drain()`` reports the loss).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, "
                f"not {type(data).__name__!r}"
            )
        if self._eof_requested:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._state is not State.OPEN:
            return  # after close() or a failure: dropped, as asyncio
        session = self._tls
        if session is not None:
            if not session.handshake_done or self._pending_plaintext:
                if not self._pending_plaintext:
                    self._pending_plaintext = bytearray()
                self._pending_plaintext += data
                self._after_queue_grew()
                return
            try:
                data = session.encrypt(data)
            except ssl.SSLError as exc:
                self._lose_connection(exc)
                return
        self._send_now(data)

    def _send_now(self, data: bytes | bytearray | memoryview) -> None:
        """Hand bytes (ciphertext over TLS) to the socket, or queue them."""
        sock = self._socket
        if sock is not None and not self._flushing:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass  # the socket is full: queue it all
            except OSError as exc:
                self._lose_connection(exc)
                return
            else:
                self._sent_without_yield += sent
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]
        self._queue += data
        self._after_queue_grew()

    def _after_queue_grew(self) -> None:
        if not self._write_paused and self.get_write_buffer_size() > self._high_water:
            self._write_paused = True
        self._start_flushing()

    def writelines(self, list_of_data: Any) -> None:
        """Write every bytes-like item of an iterable, in order; all or nothing.

        As asyncio's socket transports on this Python: unlike :meth:`write`,
        any object with the buffer protocol is taken (an ``array.array``,
        say), and an item that is not bytes-like raises their ``TypeError``
        before anything is written.
        """
        if JOINS_WRITELINES:
            # Up to 3.11: b"".join() ("sequence item 1: expected a
            # bytes-like object, str found").
            self.write(b"".join(list_of_data))
            return
        # From 3.12: a memoryview of each item ("memoryview: a bytes-like
        # object is required, not 'str'").
        for view in [memoryview(data) for data in list_of_data]:
            self.write(view.cast("B"))

    def can_write_eof(self) -> bool:
        """True unless the connection runs TLS, which has no half-close."""
        return self._tls is None

    def write_eof(self) -> None:
        """Close the write direction after the queued data has been sent."""
        if self._state is not State.OPEN or self._eof_requested:
            return
        if not self.can_write_eof():
            raise NotImplementedError  # asyncio's SSL transport's, bare
        self._eof_requested = True
        sock = self._socket
        if sock is not None and not self._flushing:
            self._eof_sent = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                self._lose_connection(exc)
            return
        self._start_flushing()

    def is_closing(self) -> bool:
        """True once the transport is closing, closed, or its connection was lost."""
        if self._pulled:
            self._poll()
        return self._state is not State.OPEN

    def close(self) -> None:
        """Send what is queued, then close the stream. Returns at once."""
        if self._state is not State.OPEN:
            return
        self._state = State.CLOSING
        self._start_flushing()

    def _close_gracefully(self, timeout: float) -> None:
        """Close, shutting down writing first and waiting for the peer's EOF."""
        if self._state is not State.OPEN:
            return
        self._linger_timeout = timeout
        self.close()
        spawn_detached(
            self._backend,
            lambda: self._abort_unless_closed_within(timeout),
            "portastreams graceful close",
        )

    async def _abort_unless_closed_within(self, timeout: float) -> None:
        """After a graceful close's grace period, drop whatever is left."""
        with anyio.move_on_after(timeout + 1.0):
            await self._wait_closed()
        if self._state is not State.CLOSED:
            self.abort()

    def abort(self) -> None:
        """Close the stream at once, dropping whatever is queued."""
        if self._state is State.CLOSED:
            return
        self._queue.clear()
        self._pending_plaintext = b""
        self._aborted = True
        self._state = State.CLOSING
        if self._flush_scope is not None:
            self._flush_scope.cancel()
        self._start_flushing()

    def get_extra_info(self, name: str, default: object = None) -> object:
        """asyncio's transport information, from the stream's typed attributes."""
        if name in self._extra:
            return self._extra[name]
        session = self._tls
        if session is not None and session.handshake_done:
            return tls_extra_info(session.ssl_object, name, default)
        return default

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """AnyIO typed attributes: the stream's, plus TLS ones after ``start_tls``."""
        attributes: dict[Any, Callable[[], Any]] = {**self._stream.extra_attributes}
        session = self._tls
        if session is not None and session.handshake_done:
            attributes.update(
                tls_extra_attributes(session.ssl_object, self._server_side)
            )
        return attributes

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet handed to the operating system."""
        return len(self._queue) + self._in_flight + len(self._pending_plaintext)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)`` water marks, as asyncio."""
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        """Set the water marks with asyncio's defaults and validation."""
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        # As asyncio's transports: new limits may pause writing at once;
        # writing resumes only as the buffer drains (raising the limits of a
        # paused transport does not release drain() while the peer stalls).
        if self.get_write_buffer_size() > high:
            self._write_paused = True

    # -- asyncio.ReadTransport (what the reader calls) -------------------------

    def pause_reading(self) -> None:
        """Stop the receiver after its current chunk (the reader is full)."""
        self._read_paused = True

    def resume_reading(self) -> None:
        """Let the receiver go on."""
        self._read_paused = False
        event = self._read_resumed
        if event is not None:
            self._read_resumed = None
            event.set()

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing, as
        asyncio's (still True after the peer's EOF)."""
        return not self._read_paused and self._state is State.OPEN

    # -- what StreamWriter awaits ----------------------------------------------

    async def _drain_helper(self) -> None:
        """Return once the buffer is at or below the low-water mark.

        Raises the connection's error, or ``ConnectionResetError('Connection
        lost')`` once the transport was closed, as asyncio.
        """
        if self._state is not State.OPEN:
            # Let a close in progress finish, as asyncio lets connection_lost()
            # run, so that a write()/drain() loop notices the closed stream;
            # by then the reader knows the error, as asyncio's does.
            await anyio.lowlevel.checkpoint()
            if self._error is not None:
                self._reader._connection_lost(self._error)
            self._raise_if_closing()
        if not self._write_paused:
            if self._sent_without_yield >= SENT_WITHOUT_YIELD:
                # On trio the socket took it all at once, again and again:
                # let other tasks run (a write()/drain() loop would starve
                # them). Not after every write: a yield per reply costs a
                # pipelining server a third of its throughput.
                self._sent_without_yield = 0
                await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(event)
        try:
            await event.wait()
        finally:
            waiters = self._drain_waiters
            if waiters is not None and event in waiters:
                waiters.remove(event)
        if self._error is not None:
            # A drain() that waited gets the error itself, as asyncio's
            # waiters do from connection_lost(exc).
            raise self._error

    def _raise_if_closing(self) -> None:
        if self._state is not State.OPEN:
            raise ConnectionResetError("Connection lost")

    async def _wait_closed(self) -> None:
        """Return once the stream has been closed."""
        if self._pulled and self._state is State.OPEN:
            # A reset closes the connection, as asyncio's, even when nobody
            # reads: from now on a receiver watches the socket.
            self._receive_eagerly()
        if self._state is State.CLOSED:
            await anyio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = anyio.Event()
        await self._closed_event.wait()

    async def _start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        """``StreamWriter.start_tls`` for this transport: see :meth:`handshake`."""
        await self.handshake(
            sslcontext,
            hostname=server_hostname,
            timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    def _abandon_tls(self, transport: object) -> None:
        """Nothing to abandon: :meth:`_start_tls` hands out no new transport
        (a close during the handshake already ended this connection)."""

    # -- the receiver ------------------------------------------------------------

    def _new_cancel_scope(self) -> Any:
        """A cancel scope for the receiver over a stream: trio's own on trio
        (AnyIO's wraps it, at a few hundred bytes per connection)."""
        if self._backend == "trio":
            import trio

            return trio.CancelScope()
        return anyio.CancelScope()

    async def _receive_loop(self) -> None:
        try:
            if self._stream_closing:
                return
            # (No coroutine in between: each frame of this await chain stays
            # alive on every idle connection.)
            if self._socket is not None:
                # No cancel scope (about 700 bytes per connection on trio):
                # _stop_receiver() wakes this one instead.
                await self._receive_from_socket(self._socket)
                return
            with self._new_cancel_scope() as scope:
                self._receive_scope = scope
                await self._receive_from_stream()
        except Exception as exc:
            if self._aborted or self._stream_closing:
                pass  # our own close pulled the stream from under the receiver
            elif isinstance(exc, CONNECTION_FAILURES):
                self._lose_connection(_as_connection_error(exc))
            else:
                logger.error("portastreams receiver failed", exc_info=exc)
                self._lose_connection(_as_connection_error(exc))
        finally:
            self._receive_scope = None
            self._receiving = False
            if self._peer_eof_event is not None:
                self._peer_eof_event.set()
            if self._receiver_done is not None:
                self._receiver_done.set()

    async def _receive_from_stream(self) -> None:
        """The receiver over the stream's own ``receive()``."""
        while True:
            if self._read_paused:
                await self._wait_until_resumed()
                continue
            try:
                data = await self._stream.receive(RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            if not self._take_received(data):
                return

    async def _receive_from_socket(self, sock: socket.socket) -> None:
        """The receiver on trio: the socket's own ``recv_into()``, no stream layer.

        Each receive lands in the thread's receive buffer and is fed at once
        (a reader probably waits for it). After a short one the socket has
        probably run dry, so the receiver waits for it to be readable before
        asking again: a refused receive raises an exception, the costliest
        step of a request/response turn. While the socket always has more,
        the receiver still yields to other tasks every
        ``MAX_RECEIVES_WITHOUT_YIELD`` receives.
        """
        import trio

        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        view = thread_receive_view(RECEIVE_SIZE)
        full = len(view)
        unbroken = 0
        while True:
            if self._stream_closing:
                return  # see _stop_receiver()
            if self._read_paused:
                await self._wait_until_resumed()
                continue
            if self._pulling:
                await self._wait_until_pulled()
                continue
            received = _receive_into(sock, view)
            if received is None:
                # (Not in an except block: there, the exception -- about 600
                # bytes with its traceback -- would stay alive on every idle
                # connection.)
                unbroken = 0
                await wait_readable(sock)
                continue
            if not self._take_received(view[:received]):
                return
            if received < full:
                unbroken = 0
                if not self._read_paused:
                    await wait_readable(sock)
            else:
                unbroken += 1
                if unbroken >= MAX_RECEIVES_WITHOUT_YIELD:
                    unbroken = 0
                    await checkpoint()

    # -- pull mode: reads receive in their own task --------------------------------

    async def _pull(self, chunk_size: int = 0) -> bytes:
        """Receive for a read that needs more bytes, in the reading task itself.

        Pull mode (a plain socket on trio): one receive, fed to the reader as
        the receiver feeds it -- bytes, the peer's EOF, or a failure. It
        returns once something was fed, or once the connection is closed (the
        reader then has its EOF or error). A cancelled pull consumed nothing.
        No receiver task means no task switch between the socket and the
        read, and no task per idle connection.

        With ``chunk_size`` (``read(n)`` on an empty buffer), up to that many
        bytes are returned instead of fed: one copy, as ``recv()`` makes,
        instead of three. Otherwise, and for the peer's EOF, ``b""``.

        (One coroutine, its waits inline: an idle connection keeps each frame
        of the await chain alive.)
        """
        sock = self._socket
        assert sock is not None
        trio = _trio
        lowlevel = trio.lowlevel
        # An interruption (see _interrupt_pull()) that finds the pull between
        # two asks, or waiting for resume_reading(), is seen at the next one.
        self._pull_interrupted = False
        while self._state is State.OPEN:
            if self._read_paused:  # (by the application: the reader resumes)
                await self._wait_until_resumed()
                if self._pull_interrupted:
                    self._pull_interrupted = False
                    return b""
                continue
            self._pulling = True
            try:
                if self._receives_without_wait < 0:
                    # The last receive was short: the socket ran dry, and the
                    # answer to what was sent since is on its way. Let the
                    # other tasks (and the peer, on another CPU) have a turn,
                    # then ask: the answer has often come by then, which
                    # spares the sleep on the socket and the wake-up, the
                    # costliest part of a turn between two CPUs. A client
                    # asks a few times so (each costs a scheduler pass); a
                    # server's handlers give each other those turns anyway.
                    self._receives_without_wait += 1
                    await lowlevel.cancel_shielded_checkpoint()
                    if self._pull_interrupted:
                        self._pull_interrupted = False
                        return b""
                received = self._receive_now(sock, chunk_size)
                if received is None:
                    if self._receives_without_wait < 0:
                        continue  # (a client's) yield and ask again
                    self._receives_without_wait = 0  # (the wait is a yield)
                    self._pull_parked = True
                    try:
                        await lowlevel.wait_readable(sock)
                    finally:
                        self._pull_parked = False
                    continue
                if self._receives_without_wait >= MAX_RECEIVES_WITHOUT_YIELD:
                    # A socket that always has more must not starve others.
                    self._receives_without_wait = 0
                    await lowlevel.cancel_shielded_checkpoint()
                return received
            except trio.ClosedResourceError:
                if self._pull_interrupted:
                    self._pull_interrupted = False
                    return b""  # see _interrupt_pull()
                continue  # our own close, from another task
            except OSError as exc:
                if self._state is State.OPEN:
                    self._lose_connection(exc)
                continue
            finally:
                self._pulling = False
                done = self._pull_done
                if done is not None:
                    self._pull_done = None
                    done.set()
        await self._wait_closed()
        return b""

    def _receive_now(self, sock: socket.socket, chunk_size: int) -> bytes | None:
        """One receive for :meth:`_pull`: None if the socket has nothing; else
        what :meth:`_pull` returns. Counts full receives in a row (-1 after a
        short one)."""
        result = b""
        if chunk_size:
            chunk = _receive(sock, chunk_size)
            if chunk is None:
                return None
            if chunk and self._tls is None:
                result = chunk
            else:  # the peer's EOF, or (start_tls meanwhile) ciphertext
                self._take_received(chunk)
            received, full = len(chunk), chunk_size
        else:
            view = thread_receive_view(RECEIVE_SIZE)
            received_into = _receive_into(sock, view)
            if received_into is None:
                return None
            self._take_received(view[:received_into])
            received, full = received_into, len(view)
        if received < full:
            self._receives_without_wait = (
                -1 if self._server_side else -CLIENT_ASKS_AFTER_A_SHORT_RECEIVE
            )
        else:
            self._receives_without_wait += 1
        return result

    def _interrupt_pull(self) -> None:
        """Wake a pulled read: somebody else gave the reader an exception,
        its EOF or bytes (asyncio wakes the read). A read waiting on the
        socket wakes now; one between two asks, before its next ask.

        trio wakes the socket's waiters with ``ClosedResourceError`` (a
        ``notify_closing()`` that no close follows); a flusher waiting to
        write takes that as the spurious wake-up it is and waits again.
        """
        self._pull_interrupted = True
        if self._pull_parked:
            _trio.lowlevel.notify_closing(self._socket)
        elif self._read_resumed is not None:
            self._read_resumed.set()  # (a wait for resume_reading())

    def _poll(self) -> None:
        """Take all the socket has now, as a receiver would have by now.

        Pull mode, while no read receives: ``reader.at_eof()``,
        ``reader.exception()`` and ``is_closing()`` call this first, so that
        they answer as asyncio's, whose transport reads eagerly -- the peer's
        close or reset shows without a read. A failure reaches the reader at
        once (an event loop would have run asyncio's ``connection_lost()``).
        While a read waits on the socket, the socket is left to it; outside
        an event loop (a writer collected later, say) nothing is looked at.
        """
        if self._pulling or not _trio.lowlevel.in_trio_run():
            return
        sock = self._socket
        assert sock is not None
        view = thread_receive_view(RECEIVE_SIZE)
        while (
            self._state is State.OPEN and not self._peer_eof and not self._read_paused
        ):
            try:
                received = _receive_into(sock, view)
            except OSError as exc:
                self._lose_connection(exc)
                self._reader._connection_lost(exc)
                return
            if received is None:
                return
            self._take_received(view[:received])

    async def _wait_until_pulled(self) -> None:
        """Wait until the read that receives now is done (the receiver takes over)."""
        done = self._pull_done = self._pull_done or anyio.Event()
        await done.wait()

    def _take_received(self, data: bytes | memoryview) -> bool:
        """Deliver what a receive returned (``b""``: the peer's EOF); False
        when the receiver is done (EOF, or the connection failed)."""
        if not data:
            self._on_peer_eof()
            return False
        self._on_received(data)
        return self._error is None and self._state is not State.CLOSED

    async def _wait_until_resumed(self) -> None:
        """Wait, while reading is paused, until ``resume_reading()``."""
        event = self._read_resumed = anyio.Event()
        await event.wait()

    def _on_received(self, data: bytes | memoryview) -> None:
        session = self._tls
        if session is None:
            if not self._reader._core.eof:
                self._reader.feed_data(data)
            return
        session.receive(data)
        self._decrypt(session)

    def _decrypt(self, session: TLSSession) -> None:
        if not session.handshake_done:
            self._advance_handshake()
            if not session.handshake_done:
                return
        chunks, closed, error = session.read_plaintext(RECEIVE_SIZE)
        reader = self._reader
        if not reader._core.eof:
            for chunk in chunks:
                reader.feed_data(chunk)
        if error is not None:
            self._lose_connection(error)  # after what came before it
            return
        answer = session.outgoing()
        if answer:
            self._send_now(answer)
        if closed:
            self._on_peer_eof()

    def _advance_handshake(self) -> None:
        session = self._tls
        assert session is not None
        try:
            done = session.do_handshake()
        except ssl.SSLError as exc:
            self._finish_handshake(exc)
            return
        hello = session.outgoing()
        if hello:
            self._send_now(hello)
        if done:
            self._finish_handshake(None)

    def _finish_handshake(self, error: BaseException | None) -> None:
        ready = self._tls_ready
        if ready is None or ready.is_set():
            return
        self._tls_error = error
        ready.set()
        if error is not None or not self._pending_plaintext:
            return
        # What was written during the handshake, encrypted now.
        session = self._tls
        assert session is not None  # (a handshake has a session)
        plaintext = bytes(self._pending_plaintext)
        self._pending_plaintext = b""
        try:
            self._send_now(session.encrypt(plaintext))
        except ssl.SSLError as exc:
            self._lose_connection(exc)

    def _on_peer_eof(self) -> None:
        """The peer finished sending: EOF for the reader, as asyncio's transports."""
        self._peer_eof = True
        session = self._tls
        if session is not None and not session.handshake_done:
            # asyncio: a hang-up during the handshake is a reset.
            self._finish_handshake(ConnectionResetError())
        if self._error is None and not self._reader._core.eof:
            # (After a failure the reader gets the error when the close is done.)
            self._reader.feed_eof()
        if self._peer_eof_event is not None:
            self._peer_eof_event.set()
        if session is not None:
            # TLS has no half-close: the connection ends (asyncio's SSL
            # transport closes once the peer's close_notify arrives). A plain
            # one stays open, even when both directions are shut, until
            # close(), as asyncio's.
            self.close()

    # -- the flusher ---------------------------------------------------------------

    def _start_flushing(self) -> None:
        if not self._flushing:
            self._flushing = True
            spawn_detached(self._backend, self._flush, "portastreams flusher")

    async def _flush(self) -> None:
        queue = self._queue
        try:
            with anyio.CancelScope() as scope:
                self._flush_scope = scope
                while not self._aborted:
                    sock = self._socket
                    if queue and sock is not None:
                        # Straight from the queue to the socket: no copy of
                        # the chunk, no stream layer.
                        try:
                            await anyio.wait_writable(sock)
                        except anyio.ClosedResourceError:
                            if sock.fileno() == -1:
                                raise
                            continue  # woken for a pulled read: see above
                        # Released on the way out, even by an error whose
                        # traceback keeps the chunk: the queue must stay
                        # resizable.
                        with (
                            memoryview(queue) as view,
                            view[:MAX_SEND_SIZE] as piece,
                        ):
                            sent = _send_some(sock, piece)
                        del queue[:sent]
                        if self._write_paused:
                            self._maybe_resume_writing()
                    elif queue:
                        if len(queue) <= MAX_SEND_SIZE:
                            chunk = bytes(queue)
                            queue.clear()
                        else:
                            chunk = bytes(memoryview(queue)[:MAX_SEND_SIZE])
                            del queue[:MAX_SEND_SIZE]
                        self._in_flight = len(chunk)
                        await self._stream.send(chunk)
                        self._in_flight = 0
                        if self._write_paused:
                            self._maybe_resume_writing()
                    elif self._eof_requested and not self._eof_sent:
                        self._eof_sent = True
                        if sock is not None:
                            sock.shutdown(socket.SHUT_WR)
                        else:
                            await self._stream.send_eof()
                    else:
                        break
        except CONNECTION_FAILURES as exc:
            self._lose_connection(_as_connection_error(exc))
        except Exception as exc:
            logger.error("portastreams flusher failed", exc_info=exc)
            self._lose_connection(_as_connection_error(exc))
        finally:
            self._in_flight = 0
            self._flush_scope = None
            if self._state is State.CLOSING:
                await self._close_stream()
            self._flushing = False
            waiters = self._idle_waiters
            self._idle_waiters = None
            for event in waiters or ():
                event.set()

    async def _wait_until_flushed(self) -> None:
        while self._flushing:
            event = anyio.Event()
            if self._idle_waiters is None:
                self._idle_waiters = []
            self._idle_waiters.append(event)
            await event.wait()

    async def _close_stream(self) -> None:
        with anyio.CancelScope(shield=True):
            graceful = not self._aborted and self._error is None
            if graceful and self._tls is not None and self._tls.handshake_done:
                await self._shut_down_tls(self._tls)
            elif graceful and self._linger_timeout is not None and self._tls is None:
                await self._linger(self._linger_timeout)
            await self._stop_receiver()
            if self._pulled:
                # As a receiver would have, so that the close is no reset.
                self._take_what_arrived()
            closed = False
            failure: Exception | None = None
            if graceful:
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self._stream.aclose()
                        closed = True
                    except Exception as exc:
                        failure = exc
            if not closed:
                try:
                    await anyio.aclose_forcefully(self._stream)
                except Exception as exc:
                    failure = failure or exc
            if failure is not None:
                # Closed all the same: nothing is left to send or receive.
                logger.debug("error while closing %r: %r", self._stream, failure)
        self._mark_closed()

    async def _stop_receiver(self) -> None:
        """Stop the receiver, and let it finish, before the stream is closed.

        Closing a stream under a pending ``receive()`` is not safe on every
        AnyIO stream (its socket can be closed while still registered with
        the event loop), so the receiver is cancelled and awaited first.
        """
        self._stream_closing = True
        scope = self._receive_scope
        if self._receiving:
            # (Made only now: an Event per connection would sit idle.)
            done = self._receiver_done = self._receiver_done or anyio.Event()
            if self._socket is not None:
                self._wake_socket_receiver(self._socket)
            elif scope is not None:
                _forget_raw_socket_reader(self._stream, self._backend)
                scope.cancel()
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await done.wait()
        # Let the event loop run what the cancelled receive scheduled.
        await anyio.lowlevel.checkpoint()

    def _wake_socket_receiver(self, sock: socket.socket) -> None:
        """Wake the socket receiver wherever it waits; it sees
        ``_stream_closing`` and ends, reading nothing more.

        On the socket, trio's ``notify_closing()`` (no close follows at once;
        a flusher waiting to write takes it as a spurious wake-up), else the
        event it waits for; a receiver between two receives just goes on to
        its check.
        """
        _trio.lowlevel.notify_closing(sock)
        for event in (self._read_resumed, self._pull_done):
            if event is not None:
                event.set()

    async def _shut_down_tls(self, session: TLSSession) -> None:
        """Send ``close_notify`` after the data; wait a while for the peer's answer.

        The receiver keeps reading meanwhile, so nothing the peer sends is
        left unread (an unread socket closes with a reset).
        """
        try:
            alert = session.close_notify()
            if alert:
                with anyio.move_on_after(self._shutdown_timeout):
                    await self._send_all(alert)
            await self._wait_for_peer_eof(self._shutdown_timeout)
        except CONNECTION_FAILURES as exc:
            logger.debug("TLS shutdown failed: %r", exc)

    async def _linger(self, timeout: float) -> None:
        """Shut down writing, then give the peer ``timeout`` seconds to finish."""
        try:
            if not self._eof_sent:  # (the flusher is done: no more sends)
                if self._socket is not None:
                    self._socket.shutdown(socket.SHUT_WR)
                else:
                    await self._stream.send_eof()
            await self._wait_for_peer_eof(timeout)
        except CONNECTION_FAILURES as exc:
            logger.debug("graceful close failed: %r", exc)

    async def _wait_for_peer_eof(self, timeout: float) -> None:
        if self._pulled:
            self._receive_eagerly()  # nobody may be reading
        if self._peer_eof or not self._receiving:
            return
        if self._read_paused:
            self.resume_reading()
        event = self._peer_eof_event = anyio.Event()
        with anyio.move_on_after(timeout):
            await event.wait()

    async def _send_all(self, data: bytes) -> None:
        sock = self._socket
        if sock is None:
            await self._stream.send(data)
            return
        view = memoryview(data)
        while view:
            await anyio.wait_writable(sock)
            view = view[_send_some(sock, view) :]

    def _mark_closed(self) -> None:
        self._state = State.CLOSED
        self._queue.clear()
        self._pending_plaintext = b""
        self._wake_drain_waiters()
        if self._tls_ready is not None and not self._tls_ready.is_set():
            self._finish_handshake(
                self._error or ConnectionResetError("Connection lost")
            )
        if self._error is not None:
            self._reader._connection_lost(self._error)
        elif not self._reader._core.eof:
            self._reader.feed_eof()  # even after a set_exception(), as asyncio
        if self._closed_event is not None:
            self._closed_event.set()

    def _take_what_arrived(self) -> None:
        """Before giving up on a socket, read what the peer sent before it left.

        A peer that answers with an error message and resets (many servers
        do) makes our next send fail; the message may already be in the
        kernel's buffer, unread. Take it, so that reads return it before the
        error.
        """
        sock = self._socket
        if sock is None or self._read_paused:
            return
        if not self._receiving and not self._pulled:
            return
        view = thread_receive_view(RECEIVE_SIZE)
        for _ in range(64):
            try:
                received = sock.recv_into(view)
            except OSError:
                return
            if not received:
                return
            self._on_received(view[:received])

    def _lose_connection(self, exc: BaseException) -> None:
        """The connection failed: drop what is queued, close, then fail the reader.

        As asyncio's transports: the reader learns the error when the close
        is done (asyncio's ``connection_lost()`` runs soon, not at once), so
        the first ``drain()`` says ``ConnectionResetError('Connection
        lost')`` and later reads and drains raise the error itself.
        """
        if self._error is None and self._state is not State.CLOSED:
            self._error = exc
            self._finish_handshake(exc)
            self._take_what_arrived()
        self._queue.clear()
        self._pending_plaintext = b""
        self._state = State.CLOSING if self._state is State.OPEN else self._state
        self._wake_drain_waiters()
        if self._flush_scope is not None:
            self._flush_scope.cancel()
        if self._state is State.CLOSING:
            self._start_flushing()

    def _maybe_resume_writing(self) -> None:
        if self.get_write_buffer_size() <= self._low_water:
            self._resume_writing()

    def _resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters = self._drain_waiters
        self._drain_waiters = None
        for event in waiters or ():
            event.set()

    def __repr__(self) -> str:
        return (
            f"<StreamTransport {self._state.value} "
            f"buffer={self.get_write_buffer_size()} stream={self._stream!r}>"
        )


#: The ``trio`` module, bound by the first transport over a trio socket (a
#: connection on asyncio never imports it; the socket paths import nothing).
_trio: Any = None


def _bind_trio() -> Any:
    global _trio
    import trio

    _trio = trio
    return trio


def _receive_into(sock: socket.socket, view: memoryview) -> int | None:
    """How many bytes ``sock`` put into ``view`` (0 at its end), or None if it
    has nothing now. The bytes must be copied out before anything else can
    use the buffer."""
    try:
        return sock.recv_into(view)
    except (BlockingIOError, InterruptedError):
        return None


def _receive(sock: socket.socket, size: int) -> bytes | None:
    """Up to ``size`` bytes from ``sock`` (``b""`` at its end), or None if it
    has nothing now."""
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None


def _send_some(sock: socket.socket, data: memoryview) -> int:
    """Send what ``sock`` takes of ``data`` now; 0 if it takes nothing after
    all (a wake-up that came before the room did)."""
    try:
        return sock.send(data)
    except (BlockingIOError, InterruptedError):
        return 0


def _forget_raw_socket_reader(stream: ByteStream, backend: Backend) -> None:
    """Unregister an AnyIO asyncio raw-socket stream's pending read callback.

    AnyIO's asyncio UNIX socket streams wait for readability with
    ``loop.add_reader(sock, future.set_result, None)``; if the receive is
    cancelled in the loop iteration in which the socket became readable, the
    queued callback sets the result of a cancelled future and the event loop
    logs an ``InvalidStateError``. Removing the reader first cancels that
    callback. Transports' own sockets are left alone.
    """
    if backend != "asyncio" or type(stream).__module__ != "anyio._backends._asyncio":
        return
    if getattr(stream, "_receive_future", None) is None:
        return
    sock = stream.extra(SocketAttribute.raw_socket)  # every one of them has it
    import asyncio

    with contextlib.suppress(ValueError):  # a socket closed under us
        asyncio.get_running_loop().remove_reader(sock)


def _as_connection_error(exc: BaseException) -> BaseException:
    """The builtin ``OSError`` for a stream failure, AnyIO's error as its cause.

    ``ssl.SSLError`` (an ``OSError``) stays as it is, as in asyncio.
    """
    error = connection_error_from(exc)
    if error is not exc and error.__cause__ is None:
        error.__cause__ = exc
    return error
