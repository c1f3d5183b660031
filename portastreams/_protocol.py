"""``StreamReaderProtocol``: the asyncio-only adaptor between a protocol and a reader.

For code that builds streams itself with ``loop.create_connection`` or
``loop.create_server``, as asyncio's own ``open_connection`` does. It feeds a
portastreams :class:`~portastreams.StreamReader` (feed mode, with the
transport paused while the buffer is over ``2 * limit``) and, given
``client_connected_cb``, builds a :class:`~portastreams.StreamWriter` over the
asyncio transport. There are no asyncio protocols on trio: constructing one
there raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import sys
from collections import deque
from typing import Any

from ._extra import native_extra_attributes
from ._reader import StreamReader
from ._tls import (
    handshake_timeout,
    native_shutdown_option,
    translate_handshake_timeout,
)
from ._writer import StreamWriter

__all__ = ["StreamReaderProtocol"]

logger = logging.getLogger("portastreams")


class StreamReaderProtocol(asyncio.Protocol):
    """An ``asyncio.Protocol`` that feeds ``stream_reader`` (asyncio only).

    ``client_connected_cb(reader, writer)``, if given, is called when the
    connection is made; a coroutine it returns runs as a task, and the
    transport is closed if that task fails.
    """

    def __init__(
        self,
        stream_reader: StreamReader,
        client_connected_cb: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        server_side: bool | None = None,
    ) -> None:
        trio = sys.modules.get("trio")
        if trio is not None and trio.lowlevel.in_trio_run():
            raise RuntimeError(
                "StreamReaderProtocol is asyncio-only: trio has no protocols or "
                "transports. Use portastreams.open_connection(), start_server() "
                "or wrap_stream() instead."
            )
        self._reader = stream_reader
        stream_reader._attributes = self
        self._client_connected_cb = client_connected_cb
        self._server_side = (
            client_connected_cb is not None if server_side is None else server_side
        )
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._stream_writer: StreamWriter | None = None
        self._task: asyncio.Task[Any] | None = None
        self._paused = False
        self._connection_lost = False
        # Nothing for drain() to wait for or report: connected, not paused,
        # not lost, not closing gracefully (the transport's own closing is
        # asked each time). Kept by the handlers that change those.
        self._drain_free = False
        self._lost_exception: BaseException | None = None
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        self._closed: asyncio.Future[None] | None = None
        self._lingering = False
        self._over_ssl = False
        self._linger_timer: asyncio.TimerHandle | None = None

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (not an isinstance() check: uvloop's transports
        # do not subclass asyncio.Transport).
        stream_transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._transport = stream_transport
        self._drain_free = not (
            self._paused or self._lingering or self._connection_lost
        )
        self._over_ssl = transport.get_extra_info("sslcontext") is not None
        self._reader.set_transport(stream_transport)
        self._closed = self._get_loop().create_future()
        if self._client_connected_cb is not None:
            writer = StreamWriter(self._transport, self, self._reader)
            self._stream_writer = writer
            result = self._client_connected_cb(self._reader, writer)
            if inspect.iscoroutine(result):
                self._task = self._get_loop().create_task(result)
                self._task.add_done_callback(self._on_callback_done)

    def _on_callback_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            if self._transport is not None:
                self._transport.close()
            return
        exc = task.exception()
        if exc is not None:
            logger.error("Unhandled exception in client_connected_cb", exc_info=exc)
            if self._transport is not None:
                self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._reader.feed_data(data)

    def eof_received(self) -> bool:
        self._reader.feed_eof()
        if self._lingering:
            return False  # the graceful close is complete: let it close
        # Keep a plain transport open for writing (half-close), as asyncio
        # does; TLS has no half-close, so let it close.
        return not self._over_ssl

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is None:
            if not self._reader._core.eof:
                self._reader.feed_eof()
        else:
            self._reader._connection_lost(exc)
        self._connection_lost = True
        self._drain_free = False
        self._lost_exception = exc
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        closed = self._closed
        if closed is not None and not closed.done():
            closed.set_result(None)
        # Wake the waiters without removing them: each _drain_helper() removes
        # its own waiter (as asyncio's FlowControlMixin).
        for waiter in self._drain_waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
        self._transport = None

    def pause_writing(self) -> None:
        self._paused = True
        self._drain_free = False

    def resume_writing(self) -> None:
        self._paused = False
        self._drain_free = not (self._lingering or self._connection_lost)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- what StreamWriter awaits -----------------------------------------

    def _close_gracefully(self, timeout: float) -> None:
        """Half-close, then close when the peer's EOF arrives (or after ``timeout``)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._lingering:
            return
        if self._reader._core.eof or not transport.can_write_eof():
            # The peer is done sending, or TLS (whose close already sends
            # close_notify and waits for the peer's).
            transport.close()
            self._linger_timer = self._get_loop().call_later(timeout, transport.abort)
            return
        self._lingering = True
        self._drain_free = False
        transport.write_eof()
        if self._paused_reading_for_linger():
            transport.resume_reading()
        # After the grace period, whatever is left is dropped: a peer that
        # neither reads nor finishes does not hold the connection open.
        self._linger_timer = self._get_loop().call_later(timeout, transport.abort)

    def _paused_reading_for_linger(self) -> bool:
        reader = self._reader
        if reader._paused:
            reader._paused = False
            return True
        return False

    async def _drain_helper(self) -> None:
        if self._drain_free and not self._transport.is_closing():  # type: ignore[union-attr]
            return  # the per-write path
        if self._connection_lost:
            raise ConnectionResetError("Connection lost")
        if self._lingering:
            # Closed gracefully by the server: writing is over, as after close().
            await asyncio.sleep(0)
            raise ConnectionResetError("Connection lost")
        if self._transport is not None and self._transport.is_closing():
            await asyncio.sleep(0)
            if self._connection_lost:
                raise ConnectionResetError("Connection lost")
        if not self._paused:
            return
        waiter = self._get_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            self._drain_waiters.remove(waiter)

    async def _start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport:
        """Upgrade with ``loop.start_tls``; return the TLS transport for the writer."""
        if self._transport is None or self._connection_lost:
            raise ConnectionResetError("Connection lost")
        await self._drain_helper()
        timeout = handshake_timeout(ssl_handshake_timeout)
        shutdown_option: dict[str, Any] = native_shutdown_option(ssl_shutdown_timeout)
        try:
            transport = await self._get_loop().start_tls(
                self._transport,
                _CopyingProtocol(self),
                sslcontext,
                server_side=self._server_side,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
                **shutdown_option,
            )
        except BaseException as exc:
            # asyncio closes the socket under a failed handshake without
            # telling this protocol; wait_closed() must still return.
            if not self._connection_lost:
                lost = exc if isinstance(exc, OSError) else ConnectionResetError()
                self.connection_lost(lost)
            translate_handshake_timeout(exc, ssl_handshake_timeout)
            raise
        if transport is None:
            # The connection was closed during the handshake (asyncio's
            # start_tls() then returns None, and CPython's writer fails with
            # an AttributeError): the error every other path raises.
            if not self._connection_lost:
                self.connection_lost(None)
            raise ConnectionResetError("Connection lost")
        self._transport = transport
        self._over_ssl = True
        return transport

    def _abandon_tls(self, transport: asyncio.BaseTransport) -> None:
        """The connection was closed by this side while ``start_tls`` ran.

        uvloop still hands out the TLS transport, over the closed connection,
        and never tells this protocol: close it, and end the connection here.
        """
        transport.close()
        if not self._connection_lost:
            self.connection_lost(None)

    @property
    def extra_attributes(self) -> Any:
        """AnyIO typed attributes of the connection (empty once it is lost)."""
        transport = self._transport
        if transport is None:
            return {}
        return native_extra_attributes(transport.get_extra_info, self._server_side)

    async def _wait_closed(self) -> None:
        if self._closed is None:
            raise RuntimeError("the connection was never made")
        await asyncio.shield(self._closed)


class _CopyingProtocol(asyncio.Protocol):
    """``protocol`` presented to a TLS transport as a plain ``Protocol``.

    asyncio's TLS transport drops decrypted bytes at the peer's close when
    its application protocol is a ``BufferedProtocol`` (see
    ``_asyncio_native._protocol_for``); after ``start_tls`` the connection's
    buffered protocol is therefore fed through this copying face.
    """

    def __init__(self, protocol: StreamReaderProtocol) -> None:
        self._protocol = protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._protocol.data_received(data)

    def eof_received(self) -> bool:
        return self._protocol.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()
