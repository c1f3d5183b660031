"""The asyncio fast path for plain TCP and Unix client connections.

On asyncio (and uvloop) a plain socket connection does not need to go through
an AnyIO stream at all: the event loop's own transport already offers
synchronous writes with flow control, and a protocol can feed the reader as
data arrives. This is exactly how ``asyncio.open_connection`` is built, so
portastreams pays what asyncio pays and no more: no task per write, no
pause/resume of the transport per receive.

Every asyncio connection takes this path: plain and TLS, client and server
side (accepted sockets go to ``loop.connect_accepted_socket``), and
``start_tls`` is the loop's own. What asyncio does at a failure point is then
what portastreams does, by construction. Connections on trio, and
:func:`portastreams.wrap_stream`, take the AnyIO stream path
(:mod:`portastreams._transport`); both paths share the reader and the writer.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from typing import Any

from ._protocol import StreamReaderProtocol
from ._reader import StreamReader
from ._receive_buffer import thread_receive_view
from ._tls import (
    handshake_timeout,
    native_shutdown_option,
    translate_handshake_timeout,
)
from ._writer import StreamWriter

__all__ = [
    "BufferedStreamReaderProtocol",
    "accept_native_connection",
    "can_open_natively",
    "open_native_connection",
    "open_native_unix_connection",
]


#: How much one receive may bring in: a reader that keeps up then stays below
#: its ``2 * limit`` pause threshold, and the transport is not paused and
#: resumed per chunk.
RECEIVE_SIZE = 2**16


class BufferedStreamReaderProtocol(StreamReaderProtocol, asyncio.BufferedProtocol):
    """The protocol of portastreams' own asyncio connections.

    A ``BufferedProtocol``: the transport receives into the thread's receive
    buffer (:mod:`portastreams._receive_buffer`) instead of allocating a new
    ``bytes`` per receive, as asyncio's 256 KiB receives do.
    """

    def __init__(self, stream_reader: StreamReader, *, server_side: bool) -> None:
        super().__init__(stream_reader, server_side=server_side)
        self._receive_view = thread_receive_view(RECEIVE_SIZE)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        self._reader.feed_data(self._receive_view[:nbytes])


def _protocol_for(
    reader: StreamReader, *, server_side: bool, tls: bool
) -> StreamReaderProtocol:
    """The protocol of a new connection: buffered, except under TLS.

    asyncio's TLS transport (3.11+) delivers to a ``BufferedProtocol`` one
    buffer per step, and when the peer's close (close_notify, or the socket's
    end) arrives it stops after the step in progress: the decrypted bytes
    still waiting past that buffer are dropped. A plain ``Protocol`` is given
    everything that was decrypted, as asyncio's own streams are.
    """
    if tls:
        return StreamReaderProtocol(reader, server_side=server_side)
    return BufferedStreamReaderProtocol(reader, server_side=server_side)


def _running_uvloop() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


def can_open_natively(
    happy_eyeballs_delay: float | None = None, *, tls: bool = False
) -> bool:
    """True if the running asyncio loop can make this connection itself.

    uvloop's ``create_connection`` has no ``happy_eyeballs_delay``, and its
    TLS transport drops the last bytes it received when the peer closes
    without ``close_notify`` (asyncio's own streams on uvloop lose them
    too): such connections take the AnyIO path, which honours the option and
    runs portastreams' own TLS layer. So does TLS on Python 3.10, whose
    asyncio TLS transport does not notice a peer's close or reset.
    """
    if tls and sys.version_info < (3, 11):
        # Python 3.10's TLS transport misses a peer's close or reset
        # (is_closing() stays False): take portastreams' own TLS layer.
        return False
    if happy_eyeballs_delay is None and not tls:
        return True
    return not _running_uvloop()


def _tls_options(
    context: ssl.SSLContext | None,
    handshake: float | None,
    shutdown: float | None,
) -> dict[str, Any]:
    if context is None:
        return {}
    return {
        "ssl": context,
        "ssl_handshake_timeout": handshake_timeout(handshake),
        **native_shutdown_option(shutdown),
    }


def _native_pair(
    transport: asyncio.Transport,
    protocol: StreamReaderProtocol,
    reader: StreamReader,
) -> tuple[StreamReader, StreamWriter]:
    # asyncio's default water marks (64 KiB / 16 KiB): uvloop's transports
    # start with a 16-byte low-water mark.
    transport.set_write_buffer_limits()
    writer = StreamWriter(transport, protocol, reader)
    return reader, writer


async def open_native_connection(
    host: str | None,
    port: int | str | None,
    *,
    limit: int,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    local_addr: tuple[str, int] | None,
    sock: socket.socket | None,
    happy_eyeballs_delay: float | None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[StreamReader, StreamWriter]:
    """``asyncio.open_connection`` with portastreams' reader and writer."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit)
    protocol = _protocol_for(reader, server_side=False, tls=ssl_context is not None)
    # A port given as a string is asyncio's too (its stubs say int only).
    port_argument: Any = port
    options: dict[str, Any] = {"local_addr": local_addr, "sock": sock}
    if happy_eyeballs_delay is not None:
        options["happy_eyeballs_delay"] = happy_eyeballs_delay
    options.update(
        _tls_options(ssl_context, ssl_handshake_timeout, ssl_shutdown_timeout)
    )
    if ssl_context is not None:
        options["server_hostname"] = server_hostname
    try:
        transport, _ = await loop.create_connection(
            lambda: protocol, host, port_argument, **options
        )
    except ConnectionAbortedError as exc:
        translate_handshake_timeout(exc, ssl_handshake_timeout)
        raise
    return _native_pair(transport, protocol, reader)


async def open_native_unix_connection(
    path: str | bytes | None,
    *,
    limit: int,
    sock: socket.socket | None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[StreamReader, StreamWriter]:
    """``asyncio.open_unix_connection`` with portastreams' reader and writer."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit)
    protocol = _protocol_for(reader, server_side=False, tls=ssl_context is not None)
    options = _tls_options(ssl_context, ssl_handshake_timeout, ssl_shutdown_timeout)
    if ssl_context is not None:
        options["server_hostname"] = server_hostname
    path_argument: Any = path  # bytes paths are asyncio's too
    try:
        transport, _ = await loop.create_unix_connection(
            lambda: protocol, path_argument, sock=sock, **options
        )
    except ConnectionAbortedError as exc:
        translate_handshake_timeout(exc, ssl_handshake_timeout)
        raise
    return _native_pair(transport, protocol, reader)


async def accept_native_connection(
    sock: socket.socket,
    *,
    limit: int,
    ssl_context: ssl.SSLContext | None,
    ssl_handshake_timeout: float | None,
) -> tuple[StreamReader, StreamWriter]:
    """The pair of an accepted socket, on the loop's own transport (and TLS)."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(limit=limit)
    protocol = _protocol_for(reader, server_side=True, tls=ssl_context is not None)
    options = _tls_options(ssl_context, ssl_handshake_timeout, None)
    try:
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, sock, **options
        )
    except ConnectionAbortedError as exc:
        translate_handshake_timeout(exc, ssl_handshake_timeout)
        raise
    return _native_pair(transport, protocol, reader)
