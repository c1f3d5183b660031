"""Porting, before: an asyncio-streams program (server and clients)."""

import asyncio


async def handle_echo(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        await writer.wait_closed()


async def client(port: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(message)
    try:
        reply = await asyncio.wait_for(reader.readexactly(len(message)), 5)
    except asyncio.IncompleteReadError as exc:
        reply = exc.partial
    writer.close()
    await writer.wait_closed()
    return reply


async def main(port: int = 0) -> list[bytes]:
    server = await asyncio.start_server(handle_echo, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    messages = [b"one\n", b"two\n"]
    async with server:
        return await asyncio.gather(*(client(port, m) for m in messages))


if __name__ == "__main__":
    print(asyncio.run(main()))
