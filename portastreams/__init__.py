"""asyncio's stream API -- StreamReader, StreamWriter, open_connection,
start_server and friends -- on every AnyIO backend (asyncio, uvloop, trio).
"""

from __future__ import annotations

from ._exceptions import IncompleteReadError, LimitOverrunError
from ._reader import StreamReader

__all__ = [
    "IncompleteReadError",
    "LimitOverrunError",
    "StreamReader",
]

__version__ = "0.1.0"
