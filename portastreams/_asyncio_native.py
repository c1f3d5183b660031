"""The asyncio fast path for plain TCP and Unix client connections.

On asyncio (and uvloop) a plain socket connection does not need to go through
an AnyIO stream at all: the event loop's own transport already offers
synchronous writes with flow control, and a protocol can feed the reader as
data arrives. This is exactly how ``asyncio.open_connection`` is built, so
portastreams pays what asyncio pays and no more: no task per write, no
pause/resume of the transport per receive.

TLS connections and every connection on trio take the AnyIO stream path; the
two paths share the reader, the writer and their semantics.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, cast

from ._protocol import StreamReaderProtocol
from ._reader import StreamReader
from ._writer import StreamWriter

__all__ = [
    "BufferedStreamReaderProtocol",
    "can_open_natively",
    "open_native_connection",
    "open_native_unix_connection",
]


#: How much one receive may bring in.
RECEIVE_SIZE = 2**16

_per_thread = threading.local()


def _thread_receive_view() -> memoryview:
    """The receive buffer shared by every connection of this thread's event loop.

    Sharing is safe because a transport fills it and reports the bytes in one
    synchronous step (``recv_into`` then ``buffer_updated``), and
    ``buffer_updated`` copies them out at once: memory stays one buffer per
    thread, not one per connection.
    """
    try:
        view: memoryview = _per_thread.receive_view
    except AttributeError:
        view = _per_thread.receive_view = memoryview(bytearray(RECEIVE_SIZE))
    return view


class BufferedStreamReaderProtocol(StreamReaderProtocol, asyncio.BufferedProtocol):
    """The protocol of portastreams' own asyncio connections.

    A ``BufferedProtocol``: the transport receives into a reusable buffer
    (``recv_into``) instead of allocating a new ``bytes`` per receive --
    asyncio's 256 KiB receive objects are large enough that every allocation
    is an ``mmap``/``munmap`` pair. Receives are 64 KiB, so a reader that
    keeps up never reaches the ``2 * limit`` pause threshold and the
    transport is not paused and resumed per chunk.
    """

    def __init__(self, stream_reader: StreamReader, *, server_side: bool) -> None:
        super().__init__(stream_reader, server_side=server_side)
        self._receive_view = _thread_receive_view()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self._reader.feed_data(self._receive_view[:nbytes])


def can_open_natively(happy_eyeballs_delay: float | None) -> bool:
    """True if the running asyncio loop can make this connection itself.

    uvloop's ``create_connection`` has no ``happy_eyeballs_delay``; such a
    connection takes the AnyIO path, which honours it.
    """
    if happy_eyeballs_delay is None:
        return True
    loop_module = type(asyncio.get_running_loop()).__module__
    return not loop_module.startswith("uvloop")


async def open_native_connection(
    host: str | None,
    port: int | str | None,
    *,
    limit: int,
    local_addr: tuple[str, int] | None,
    sock: socket.socket | None,
    happy_eyeballs_delay: float | None,
) -> tuple[StreamReader, StreamWriter]:
    """``asyncio.open_connection`` with portastreams' reader and writer."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit)
    protocol = BufferedStreamReaderProtocol(reader, server_side=False)
    options: dict[str, Any] = {"local_addr": local_addr, "sock": sock}
    if happy_eyeballs_delay is not None:
        options["happy_eyeballs_delay"] = happy_eyeballs_delay
    transport, _ = await loop.create_connection(
        lambda: protocol, host, cast("Any", port), **options
    )
    # asyncio's default water marks (64 KiB / 16 KiB): uvloop's transports
    # start with a 16-byte low-water mark.
    transport.set_write_buffer_limits()
    return reader, StreamWriter(transport, protocol, reader)


async def open_native_unix_connection(
    path: str | bytes | None, *, limit: int, sock: socket.socket | None
) -> tuple[StreamReader, StreamWriter]:
    """``asyncio.open_unix_connection`` with portastreams' reader and writer."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit)
    protocol = BufferedStreamReaderProtocol(reader, server_side=False)
    transport, _ = await loop.create_unix_connection(
        lambda: protocol, cast("Any", path), sock=sock
    )
    transport.set_write_buffer_limits()  # asyncio's defaults, also on uvloop
    return reader, StreamWriter(transport, protocol, reader)
