"""``StreamTransport``: asyncio's write-transport contract over an AnyIO byte stream.

asyncio promises that ``writer.write(data)`` is synchronous, never blocks, and
that the data goes out without anybody awaiting ``drain()``:
``write(); close()``, ``write(); write_eof()`` and ``write(); await sleep(1)``
all deliver. An AnyIO stream only sends from an ``await``. This module bridges
the two with the same design asyncio's selector transports use:

1. **Synchronous fast path.** When nothing is queued and the stream is a plain
   socket the transport may write to directly (AnyIO's trio socket streams,
   which keep no user-space send buffer), ``write()`` calls the non-blocking
   ``socket.send()`` at once. When the kernel takes everything -- the common
   case -- a write costs one system call and no task switch.
2. **Queue and flusher.** Whatever cannot be sent at once is appended to a
   bytearray, and a *flusher* task is started if none runs. The flusher sends
   the queue in order with ``await stream.send(...)``, then performs a pending
   ``send_eof()`` and a pending close, and exits when there is nothing left.
   It is a detached task (see :mod:`portastreams._backend`) because
   ``write()``/``close()`` are synchronous and have no task group to use.
   There is at most one flusher per transport, so ordering is by
   construction: data, then EOF, then close.

Flow control is asyncio's: the buffered size (queued plus in flight) above
the high-water mark pauses writing, and ``drain()`` waits until it falls to
the low-water mark. A send failure is the connection's failure: the queue is
dropped, the stream closed, and every ``drain()`` raises the error.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import ByteSendStream, ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from ._backend import Backend, spawn_detached
from ._exceptions import connection_error_from
from ._tls import close_tls, handshake_timeout, wrap_tls

if TYPE_CHECKING:
    from ._reader import StreamReader

__all__ = ["StreamTransport"]

logger = logging.getLogger("portastreams")

#: asyncio's default high-water mark for write buffers.
DEFAULT_HIGH_WATER: Final = 64 * 1024
#: The most the flusher hands to one ``send()``: small enough that ``drain()``
#: waiters see the buffer shrink, large enough to amortise the await.
MAX_SEND_SIZE: Final = 256 * 1024
#: How long a graceful close (e.g. a TLS close_notify) may take before the
#: stream is closed forcefully.
CLOSE_TIMEOUT: Final = 30.0


def _socket_extra_info(stream: ByteSendStream) -> dict[str, object]:
    """``socket``/``peername``/``sockname``, read once so they outlive the socket."""
    info: dict[str, object] = {}
    sock = stream.extra(SocketAttribute.raw_socket, None)
    if sock is None:
        return info
    info["socket"] = sock
    try:
        info["sockname"] = sock.getsockname()
        info["peername"] = sock.getpeername()
    except OSError:  # pragma: no cover - a socket that died before we looked
        pass
    return info


def _tls_extra_info(stream: ByteSendStream, name: str) -> object:
    ssl_object = stream.extra(TLSAttribute.ssl_object, None)
    if ssl_object is None:
        return None
    if name == "ssl_object":
        return ssl_object
    if name == "sslcontext":
        return ssl_object.context
    if name == "peercert":
        return ssl_object.getpeercert()
    if name == "cipher":
        return ssl_object.cipher()
    if name == "compression":
        return ssl_object.compression()
    raise AssertionError(name)  # pragma: no cover


_TLS_NAMES: Final = frozenset(
    {"ssl_object", "sslcontext", "peercert", "cipher", "compression"}
)


def direct_send_socket(
    stream: ByteSendStream, backend: Backend
) -> socket.socket | None:
    """Return the socket ``write()`` may send on synchronously, if there is one.

    Only AnyIO's own trio socket streams qualify: their ``send()`` is a plain
    ``socket.send()`` loop, so bypassing it while nothing is queued keeps the
    byte order. AnyIO's asyncio streams buffer inside an asyncio transport,
    and TLS or user streams transform the data.
    """
    if backend != "trio" or type(stream).__module__ != "anyio._backends._trio":
        return None
    if not isinstance(stream, anyio.abc.SocketStream):
        return None
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    return sock


class StreamTransport:
    """The write side of a connection, with asyncio's ``WriteTransport`` API.

    It owns ``stream``: closing the transport closes the stream, both
    directions. ``writer.transport`` is this object.
    """

    def __init__(
        self, stream: ByteSendStream, backend: Backend, *, server_side: bool = False
    ) -> None:
        self._stream = stream
        self._backend: Final = backend
        self._server_side: Final = server_side
        self._direct_socket = direct_send_socket(stream, backend)
        self._can_write_eof = (
            isinstance(stream, ByteStream)
            and stream.extra(TLSAttribute.ssl_object, None) is None
        )
        self._extra = _socket_extra_info(stream)
        self._queue = bytearray()
        self._in_flight = 0
        self._eof_requested = False
        self._eof_sent = False
        self._closing = False
        self._aborted = False
        self._closed = False
        self._flushing = False
        self._flush_scope: anyio.CancelScope | None = None
        self._error: BaseException | None = None
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4
        self._paused = False
        self._drain_waiters: list[anyio.Event] = []
        self._closed_event: anyio.Event | None = None
        self._idle_waiters: list[anyio.Event] = []

    # -- asyncio.WriteTransport -------------------------------------------

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
        if not data or self._closed or self._error is not None:
            return
        if self._closing and not self._flushing:
            return
        sock = self._direct_socket
        if sock is not None and not self._flushing:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._lose_connection(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._queue += data
        if not self._paused and self.get_write_buffer_size() > self._high_water:
            self._paused = True
        self._start_flushing()

    def writelines(self, list_of_data: Any) -> None:
        """Write every bytes-like item of an iterable, in order."""
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        """True when the stream supports a half-close (not over TLS)."""
        return self._can_write_eof

    def write_eof(self) -> None:
        """Close the write direction after the queued data has been sent."""
        if self._closing or self._eof_requested:
            return
        if not self._can_write_eof:
            raise NotImplementedError(
                f"{type(self._stream).__name__} does not support write_eof()"
            )
        self._eof_requested = True
        sock = self._direct_socket
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
        return self._closing

    def close(self) -> None:
        """Send what is queued, then close the stream. Returns at once."""
        if self._closing:
            return
        self._closing = True
        self._start_flushing()

    def abort(self) -> None:
        """Close the stream at once, dropping whatever is queued."""
        self._queue.clear()
        self._aborted = True
        self._closing = True
        if self._flush_scope is not None:
            self._flush_scope.cancel()
        self._start_flushing()

    def get_extra_info(self, name: str, default: object = None) -> object:
        """asyncio's transport information, from the stream's typed attributes."""
        if name in self._extra:
            return self._extra[name]
        if (
            name in _TLS_NAMES
            and self._stream.extra(TLSAttribute.ssl_object, None) is not None
        ):
            # As asyncio's SSL transport: known over TLS, even when None.
            return _tls_extra_info(self._stream, name)
        return default

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet handed to the operating system."""
        return len(self._queue) + self._in_flight

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
        size = self.get_write_buffer_size()
        if size > high:
            self._paused = True
        elif self._paused and size <= low:
            self._resume()

    # -- what StreamWriter awaits -----------------------------------------

    async def _drain_helper(self) -> None:
        """Return once the buffer is at or below the low-water mark.

        Raises the connection's error (``ConnectionResetError('Connection
        lost')`` after a plain close) once it is gone.
        """
        if self._closing:
            # Let a close in progress finish, as asyncio lets connection_lost()
            # run, so that a write()/drain() loop notices the closed stream.
            await anyio.lowlevel.checkpoint()
        self._raise_if_lost()
        if not self._paused:
            return
        event = anyio.Event()
        self._drain_waiters.append(event)
        try:
            await event.wait()
        finally:
            if event in self._drain_waiters:
                self._drain_waiters.remove(event)
        self._raise_if_lost()

    def _raise_if_lost(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ConnectionResetError("Connection lost")

    async def _wait_closed(self) -> None:
        """Return once the stream has been closed (after :meth:`close`)."""
        if self._closed:
            return
        if self._closed_event is None:
            self._closed_event = anyio.Event()
        await self._closed_event.wait()

    async def _start_tls(
        self,
        reader: StreamReader | None,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None,
        ssl_handshake_timeout: float | None,
    ) -> None:
        """Upgrade to TLS in place, once everything written so far is sent.

        Bytes the reader already buffered stay first in line (they arrived
        before the upgrade, in plain text); later bytes are decrypted.
        """
        timeout = handshake_timeout(ssl_handshake_timeout)
        if self.get_extra_info("ssl_object") is not None:
            raise RuntimeError("the connection already uses TLS")
        if reader is not None and reader._waiter is not None:
            raise RuntimeError("start_tls() called while a read is waiting for data")
        while self._flushing:
            event = anyio.Event()
            self._idle_waiters.append(event)
            await event.wait()
        if self._closing:
            self._raise_if_lost()
            raise ConnectionResetError("Connection lost")
        stream = self._stream
        assert isinstance(stream, ByteStream)
        tls_stream = await wrap_tls(
            stream,
            server_side=self._server_side,
            context=sslcontext,
            hostname=server_hostname,
            timeout=timeout,
        )
        self._stream = tls_stream
        self._direct_socket = None
        self._can_write_eof = False
        if reader is not None:
            reader._replace_source(tls_stream)

    # -- the flusher -------------------------------------------------------

    def _start_flushing(self) -> None:
        if not self._flushing:
            self._flushing = True
            spawn_detached(self._backend, self._flush, "portastreams flusher")

    async def _flush(self) -> None:
        stream = self._stream
        queue = self._queue
        try:
            with anyio.CancelScope() as scope:
                self._flush_scope = scope
                while not self._aborted:
                    sock = self._direct_socket
                    if queue and sock is not None:
                        # Straight from the queue to the socket: no copy of
                        # the chunk, no stream layer.
                        await anyio.wait_writable(sock)
                        try:
                            with memoryview(queue) as view:
                                sent = sock.send(view[:MAX_SEND_SIZE])
                        except (BlockingIOError, InterruptedError):
                            continue
                        del queue[:sent]
                        if self._paused and len(queue) <= self._low_water:
                            self._resume()
                    elif queue:
                        if len(queue) <= MAX_SEND_SIZE:
                            chunk = bytes(queue)
                            queue.clear()
                        else:
                            chunk = bytes(memoryview(queue)[:MAX_SEND_SIZE])
                            del queue[:MAX_SEND_SIZE]
                        self._in_flight = len(chunk)
                        await stream.send(chunk)
                        self._in_flight = 0
                        if self._paused and len(queue) <= self._low_water:
                            self._resume()
                    elif self._eof_requested and not self._eof_sent:
                        self._eof_sent = True
                        if sock is not None:
                            sock.shutdown(socket.SHUT_WR)
                        else:
                            assert isinstance(stream, ByteStream)
                            await stream.send_eof()
                    else:
                        break
        except Exception as exc:
            self._lose_connection(_chained(connection_error_from(exc), exc))
        finally:
            self._in_flight = 0
            self._flush_scope = None
            if self._closing:
                await self._close_stream()
            self._flushing = False
            waiters = self._idle_waiters
            self._idle_waiters = []
            for event in waiters:
                event.set()

    async def _close_stream(self) -> None:
        with anyio.CancelScope(shield=True):
            if not self._aborted:
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        if isinstance(self._stream, TLSStream):
                            await close_tls(self._stream)
                        else:
                            await self._stream.aclose()
                    except Exception as exc:
                        logger.debug("error while closing %r: %r", self._stream, exc)
                    else:
                        self._mark_closed()
                        return
            await anyio.aclose_forcefully(self._stream)
        self._mark_closed()

    def _mark_closed(self) -> None:
        self._closed = True
        self._queue.clear()
        self._wake_drain_waiters()
        if self._closed_event is not None:
            self._closed_event.set()

    def _lose_connection(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._queue.clear()
        self._closing = True
        self._wake_drain_waiters()
        self._start_flushing()

    def _resume(self) -> None:
        self._paused = False
        self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters = self._drain_waiters
        self._drain_waiters = []
        for event in waiters:
            event.set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return (
            f"<StreamTransport {state} buffer={self.get_write_buffer_size()} "
            f"stream={self._stream!r}>"
        )


def _chained(error: OSError, cause: BaseException) -> OSError:
    if error is not cause and error.__cause__ is None:
        error.__cause__ = cause
    return error
