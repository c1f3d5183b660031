"""The server handlers written against asyncio's stream API.

The very same functions are passed to ``asyncio.start_server`` (on asyncio
and uvloop) and to ``portastreams.start_server`` (on every backend), as a
user porting a server would: ``readline`` / ``readexactly`` / ``readuntil``
to parse, one ``write`` and one ``await drain()`` per reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .protocols import HTTP_RESPONSE, http_request, resp_reply


class Reader(Protocol):
    async def readline(self) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    async def readuntil(self, separator: bytes = b"\n") -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


Handler = Callable[[Any, Any], Coroutine[Any, Any, None]]


async def _close(writer: Writer) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # a peer that reset the connection
        await writer.wait_closed()


async def resp(reader: Reader, writer: Writer) -> None:
    """Serve RESP commands until the client closes: one reply per command."""
    readline = reader.readline
    readexactly = reader.readexactly
    write = writer.write
    drain = writer.drain
    try:
        while True:
            line = await readline()
            if not line:
                break
            if line[:1] == b"*":
                args = []
                for _ in range(int(line[1:])):
                    header = await readline()
                    if header[:1] != b"$":
                        raise ValueError(f"expected a bulk string, got {header!r}")
                    args.append((await readexactly(int(header[1:]) + 2))[:-2])
            else:
                args = line.split()
            write(resp_reply(args))
            await drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        await _close(writer)


async def http(reader: Reader, writer: Writer) -> None:
    """Serve HTTP/1.1 requests on a keep-alive connection: heads by hand."""
    readuntil = reader.readuntil
    readexactly = reader.readexactly
    write = writer.write
    drain = writer.drain
    try:
        while True:
            head = await readuntil(b"\r\n\r\n")
            length, keep_alive = http_request(head)
            if length:
                await readexactly(length)
            write(HTTP_RESPONSE)
            await drain()
            if not keep_alive:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        await _close(writer)


HANDLERS: dict[str, Handler] = {"resp": resp, "http": http}
