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
from typing import Any, cast

import anyio

from ._reader import StreamReader
from ._tls import handshake_timeout
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
        self._lost_exception: BaseException | None = None
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        self._closed: asyncio.Future[None] | None = None

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance() check: uvloop's transports do not subclass
        # asyncio.Transport.
        self._transport = cast("asyncio.Transport", transport)
        self._reader.set_transport(self._transport)
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
        # Keep a plain transport open for writing (half-close), as asyncio
        # does; TLS has no half-close, so let it close.
        transport = self._transport
        return transport is None or transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is None:
            if not self._reader._core.eof:
                self._reader.feed_eof()
        else:
            self._reader._connection_lost(exc)
        self._connection_lost = True
        self._lost_exception = exc
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

    def resume_writing(self) -> None:
        self._paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- what StreamWriter awaits -----------------------------------------

    async def _drain_helper(self) -> None:
        if self._connection_lost:
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
        reader: StreamReader | None,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None,
        ssl_handshake_timeout: float | None,
    ) -> asyncio.Transport:
        """Upgrade with ``loop.start_tls``; return the TLS transport for the writer."""
        if self._transport is None or self._connection_lost:
            raise ConnectionResetError("Connection lost")
        await self._drain_helper()
        timeout = handshake_timeout(ssl_handshake_timeout)
        # Our own deadline, so that a slow handshake is a TimeoutError on every
        # backend (asyncio's own timer, set later, says ConnectionAbortedError).
        try:
            with anyio.fail_after(timeout):
                transport = await self._get_loop().start_tls(
                    self._transport,
                    self,
                    sslcontext,
                    server_side=self._server_side,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=timeout + 1.0,
                )
        except BaseException:
            # asyncio closes the socket under a failed handshake without
            # telling this protocol; wait_closed() must still return.
            if not self._connection_lost:
                self.connection_lost(ConnectionAbortedError("TLS handshake failed"))
            raise
        assert transport is not None
        self._transport = transport
        return transport

    async def _wait_closed(self) -> None:
        if self._closed is None:
            raise RuntimeError("the connection was never made")
        await asyncio.shield(self._closed)
