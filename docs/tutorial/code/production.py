"""Running in production: idle and write timeouts, and a cap on clients."""

import functools
import logging

import anyio

import portastreams

#: How long a client may stay silent before the server hangs up.
IDLE_TIMEOUT = 30.0
#: How long a reply may sit unread by the client before the server gives up.
WRITE_TIMEOUT = 30.0
#: How many clients are served at once; the next ones are turned away.
MAX_CLIENTS = 1000


async def handle(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    *,
    clients: anyio.CapacityLimiter,
    idle_timeout: float,
    write_timeout: float,
) -> None:
    try:
        clients.acquire_nowait()
    except anyio.WouldBlock:
        writer.write(b"busy, try again later\n")
        return  # the server flushes the reply and closes the connection
    try:
        while True:
            with anyio.move_on_after(idle_timeout) as idle:
                line = await reader.readline()
            if idle.cancelled_caught:
                writer.write(b"idle for too long, bye\n")
                return
            if not line:
                return  # the client has finished
            writer.write(line.upper())
            with anyio.move_on_after(write_timeout) as stalled:
                await writer.drain()
            if stalled.cancelled_caught:
                writer.transport.abort()  # it does not read: drop, do not flush
                return
    except ConnectionError:
        return  # the client reset the connection: nothing worth logging
    finally:
        clients.release()


async def main(
    port: int = 0,
    max_clients: int = 1,
    idle_timeout: float = 0.5,
    write_timeout: float = WRITE_TIMEOUT,
) -> list[bytes]:
    """Serve one client at a time; show a busy and an idle client."""
    handler = functools.partial(
        handle,
        clients=anyio.CapacityLimiter(max_clients),
        idle_timeout=idle_timeout,
        write_timeout=write_timeout,
    )
    server = await portastreams.start_server(handler, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        first = await portastreams.open_connection("127.0.0.1", port)
        first[1].write(b"hello\n")
        replies = [await first[0].readline()]  # HELLO: served
        second = await portastreams.open_connection("127.0.0.1", port)
        replies.append(await second[0].read())  # busy, then the end of the stream
        replies.append(await first[0].read())  # silent too long: idle, then the end
        for _, writer in (first, second):
            writer.close()
            await writer.wait_closed()
    for reply in replies:
        print(reply)
    return replies


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # handler failures, accept errors
    anyio.run(main)
