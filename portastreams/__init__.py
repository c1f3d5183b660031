"""asyncio's stream API on every AnyIO backend: asyncio, asyncio + uvloop, trio.

The same code runs unchanged under asyncio.run(), trio.run() and anyio.run(),
with the results, exceptions and flow control of CPython's asyncio.streams::

    reader, writer = await portastreams.open_connection("127.0.0.1", 8888)
    server = await portastreams.start_server(handle, "127.0.0.1", 8888)
    async with server:  # the server accepts connections inside this block
        ...

Connections
    open_connection       connect over TCP (or TLS): a (reader, writer) pair
    open_unix_connection  the same over a Unix domain socket
    wrap_stream           a (reader, writer) pair over any AnyIO byte stream
Servers
    start_server          a TCP (or TLS) server: handler(reader, writer) per client
    start_unix_server     the same on a Unix domain socket
    Server                what they return; accepts clients inside
                          "async with server:" or serve_forever()
Streams
    StreamReader          read(), readline(), readuntil(), readexactly(), ...
    StreamWriter          write(), drain(), close(), wait_closed(), start_tls()
Exceptions
    IncompleteReadError   the stream ended early (an asyncio.IncompleteReadError)
    LimitOverrunError     no separator within the limit (asyncio's, too)
    HandshakeTimeoutError TLS handshake too slow: a ConnectionAbortedError
                          (as asyncio) and a TimeoutError
Testing
    portastreams.testing  connected_pair() without sockets, and the
                          connection contract checker
asyncio only
    StreamReaderProtocol  an asyncio Protocol that feeds a StreamReader

help(portastreams.StreamReader) and so on for each name; the documentation
has a tutorial, a porting guide and the API reference.
"""

from __future__ import annotations

from ._connections import open_connection, open_unix_connection, wrap_stream
from ._exceptions import IncompleteReadError, LimitOverrunError
from ._protocol import StreamReaderProtocol
from ._public import present
from ._reader import StreamReader
from ._server import Server, start_server, start_unix_server
from ._tls import HandshakeTimeoutError
from ._writer import StreamWriter

__all__ = [
    "HandshakeTimeoutError",
    "IncompleteReadError",
    "LimitOverrunError",
    "Server",
    "StreamReader",
    "StreamReaderProtocol",
    "StreamWriter",
    "open_connection",
    "open_unix_connection",
    "start_server",
    "start_unix_server",
    "wrap_stream",
]

__version__ = "0.1.0"

# portastreams.StreamReader, not portastreams._reader.StreamReader, in
# tracebacks, reprs and help().
present(__name__, globals(), __all__)
