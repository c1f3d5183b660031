"""asyncio's stream API on every AnyIO backend: asyncio, asyncio + uvloop, trio.

``StreamReader``/``StreamWriter``, ``open_connection``/``start_server`` and
their Unix variants, with the results, exceptions and flow control of
CPython's ``asyncio.streams``, running unchanged under ``asyncio.run``,
``trio.run`` or ``anyio.run``.
"""

from __future__ import annotations

from ._connections import open_connection, open_unix_connection, wrap_stream
from ._exceptions import IncompleteReadError, LimitOverrunError
from ._protocol import StreamReaderProtocol
from ._reader import StreamReader
from ._server import Server, start_server, start_unix_server
from ._writer import StreamWriter

__all__ = [
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
