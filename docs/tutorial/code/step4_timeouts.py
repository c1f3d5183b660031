"""Step 4: timeouts, with each backend's own tools, and no byte lost."""

import asyncio
import sys
from collections.abc import Awaitable, Callable

import anyio

import portastreams

Ask = Callable[[portastreams.StreamReader, portastreams.StreamWriter], Awaitable[bytes]]


async def handle_slow(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    writer.write(b"Hello, ")  # half a line now...
    await reader.readline()  # ...and the rest once the client asks for it
    writer.write(b"World!\n")


async def ask_anyio(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> bytes:
    """Any backend: anyio.fail_after() raises TimeoutError."""
    try:
        with anyio.fail_after(0.1):
            return await reader.readline()
    except TimeoutError:
        print("No complete line within 0.1 s: asking for the rest")
    writer.write(b"more, please\n")
    return await reader.readline()  # the whole line: the timeout lost nothing


async def ask_trio(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> bytes:
    """trio only: trio.move_on_after() gives up silently."""
    import trio

    with trio.move_on_after(0.1):
        return await reader.readline()
    print("No complete line within 0.1 s: asking for the rest")
    writer.write(b"more, please\n")
    return await reader.readline()


async def ask_asyncio(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> bytes:
    """asyncio (and uvloop) only: asyncio.timeout(), or wait_for() before 3.11."""
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(0.1):
                return await reader.readline()
        else:
            return await asyncio.wait_for(reader.readline(), 0.1)
    except asyncio.TimeoutError:  # the same class as TimeoutError since 3.11
        print("No complete line within 0.1 s: asking for the rest")
    writer.write(b"more, please\n")
    return await reader.readline()


async def main(ask: Ask = ask_anyio, port: int = 0) -> bytes:
    server = await portastreams.start_server(handle_slow, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        line = await ask(reader, writer)
        writer.close()
        await writer.wait_closed()
    print(f"Received: {line!r}")
    return line


if __name__ == "__main__":
    anyio.run(main)
