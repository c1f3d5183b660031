"""Step 1: an echo server and its client, on any backend."""

import anyio

import portastreams


async def handle_echo(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    line = await reader.readline()
    writer.write(line)  # no await: write() queues the data and returns


async def main(port: int = 0) -> bytes:
    server = await portastreams.start_server(handle_echo, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]  # port 0 picked a free port
    async with server:  # the server accepts connections inside this block
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        writer.write(b"Hello, World!\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
    print(f"Received: {reply!r}")
    return reply


if __name__ == "__main__":
    anyio.run(main)
