"""Step 5: flow control: write() never waits, drain() is where a sender waits."""

import anyio

import portastreams

CHUNK = b"x" * 65536
CHUNKS = 64  # 4 MiB in all


async def handle_slow_reader(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    received = 0
    while data := await reader.read(65536):  # b"" at the end of the stream
        received += len(data)
        await anyio.sleep(0.001)  # a consumer slower than its producer
    writer.write(f"received {received} bytes\n".encode())


async def send_all(writer: portastreams.StreamWriter) -> int:
    """Send CHUNKS chunks; return the most that was ever waiting in the buffer."""
    most_buffered = 0
    for _ in range(CHUNKS):
        writer.write(CHUNK)
        await writer.drain()  # waits only while more than 64 KiB is waiting
        buffered = writer.transport.get_write_buffer_size()
        most_buffered = max(most_buffered, buffered)
    return most_buffered


async def main(port: int = 0) -> tuple[bytes, int]:
    server = await portastreams.start_server(handle_slow_reader, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        low, high = writer.transport.get_write_buffer_limits()
        print(f"drain() waits above {high} bytes, until {low} are left")
        most_buffered = await send_all(writer)
        writer.write_eof()
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
    print(f"At most {most_buffered} bytes were buffered; the server {reply!r}")
    return reply, most_buffered


if __name__ == "__main__":
    anyio.run(main)
