"""The server handlers a trio user writes without a stream library.

For ``trio.serve_tcp``: a hand-written ``bytearray`` receive buffer
(:class:`._trio_buffer.TrioBuffer`) over the ``trio.SocketStream`` to parse,
``await stream.send_all(reply)`` per reply. The replies come from
:mod:`.protocols`, as for the streams-API handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ._trio_buffer import EndOfData, TrioBuffer
from .protocols import HTTP_RESPONSE, http_request, resp_reply

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def resp(stream: trio.SocketStream) -> None:
    """Serve RESP commands until the client closes: one ``send_all`` per reply."""
    buffer = TrioBuffer(stream)
    readline = buffer.readline
    readexactly = buffer.readexactly
    send_all = stream.send_all
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
            await send_all(resp_reply(args))
    except (EndOfData, trio.BrokenResourceError):
        pass
    finally:
        await stream.aclose()


async def http(stream: trio.SocketStream) -> None:
    """Serve HTTP/1.1 requests on a keep-alive connection: heads by hand."""
    buffer = TrioBuffer(stream)
    readuntil = buffer.readuntil
    readexactly = buffer.readexactly
    send_all = stream.send_all
    try:
        while True:
            head = await readuntil(b"\r\n\r\n")
            length, keep_alive = http_request(head)
            if length:
                await readexactly(length)
            await send_all(HTTP_RESPONSE)
            if not keep_alive:
                break
    except (EndOfData, trio.BrokenResourceError):
        pass
    finally:
        await stream.aclose()


HANDLERS: dict[str, Handler] = {"resp": resp, "http": http}
