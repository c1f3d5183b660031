"""The control on trio: what a trio user writes without portastreams.

``trio.serve_listeners`` and a hand-written bytearray buffer per connection,
serving the same :meth:`stress.handler.Ledger.handle` as the other servers
(through the few reader and writer methods it calls). asyncio has its own
``start_server`` as the control; trio has none, so this is the fair
reference for portastreams' figures on trio: what the same handler costs on
trio itself.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import trio

from .handler import Ledger

logger = logging.getLogger("stress.trio_control")

RECEIVE_SIZE = 65536


class BufferedReader:
    """``readline`` / ``readexactly`` / ``read`` over a trio stream, by hand."""

    def __init__(self, stream: trio.abc.ReceiveStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await self._stream.receive_some(RECEIVE_SIZE)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readline(self) -> bytes:
        """A line, the partial one at EOF; ``ValueError`` past the limit (dropped)."""
        buffer = self._buffer
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end >= 0:
                if end >= self._limit:
                    del buffer[: end + 1]
                    raise ValueError("line longer than the limit")
                return self._take(end + 1)
            if len(buffer) > self._limit:
                buffer.clear()
                raise ValueError("line longer than the limit")
            start = len(buffer)
            if not await self._fill():
                return self._take(len(buffer))

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not await self._fill():
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, n)
        return self._take(n)

    async def read(self, n: int = -1) -> bytes:
        if not self._buffer:
            await self._fill()
        return self._take(len(self._buffer) if n < 0 else n)


class BufferedWriter:
    """``write`` buffers, ``drain`` sends; what is left goes out at the end."""

    def __init__(self, stream: trio.abc.SendStream) -> None:
        self._stream = stream
        self._pending = bytearray()
        self._closing = False

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._pending += data

    async def drain(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            await self._stream.send_all(data)

    def close(self) -> None:
        self._closing = True

    def is_closing(self) -> bool:
        return self._closing

    async def flush(self) -> None:
        await self.drain()


class TrioServing:
    """The hand-written trio servers (plain, and TLS with a certificate)."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self._scope = trio.CancelScope()
        self._serving = False

    @classmethod
    async def start(cls, options: Any, ledger: Ledger, task_group: Any) -> TrioServing:
        serving = cls()
        listeners: dict[str, trio.abc.Listener[Any]] = {}
        (plain,) = await trio.open_tcp_listeners(
            0, host="127.0.0.1", backlog=options.backlog
        )
        listeners["port"] = plain
        serving.ports["port"] = plain.socket.getsockname()[1]
        if options.certfile is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(options.certfile, options.keyfile)
            (raw,) = await trio.open_tcp_listeners(
                0, host="127.0.0.1", backlog=options.backlog
            )
            listeners["tls_port"] = trio.SSLListener(raw, context)
            serving.ports["tls_port"] = raw.socket.getsockname()[1]

        async def serve_one(stream: trio.abc.Stream) -> None:
            reader = BufferedReader(stream, options.limit)
            writer = BufferedWriter(stream)
            try:
                await ledger.handle(reader, writer)
                await writer.flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the client left
            except Exception:
                logger.exception("handler failed")
            finally:
                await trio.aclose_forcefully(stream)

        async def serve() -> None:
            with serving._scope:
                serving._serving = True
                async with trio.open_nursery() as nursery:
                    for listener in listeners.values():
                        nursery.start_soon(trio.serve_listeners, serve_one, [listener])
            serving._serving = False

        task_group.start_soon(serve)
        await trio.lowlevel.checkpoint()
        return serving

    def supports(self, method: str) -> bool:
        return method not in ("close_clients", "abort_clients")

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        self._scope.cancel()

    def close_clients(self) -> None:
        raise NotImplementedError("close_clients")

    def abort_clients(self) -> None:
        raise NotImplementedError("abort_clients")

    async def wait_closed(self) -> None:
        while self._serving:
            await trio.sleep(0.01)
