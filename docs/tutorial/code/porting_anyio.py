"""Porting, the portable way: AnyIO's task groups and timeouts, any backend."""

import anyio

import portastreams


async def handle_echo(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
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
    reader, writer = await portastreams.open_connection("127.0.0.1", port)
    writer.write(message)
    try:
        with anyio.fail_after(5):
            reply = await reader.readexactly(len(message))
    except portastreams.IncompleteReadError as exc:
        reply = exc.partial
    writer.close()
    await writer.wait_closed()
    return reply


async def main(port: int = 0) -> list[bytes]:
    server = await portastreams.start_server(handle_echo, "127.0.0.1", port)
    port = server.sockets[0].getsockname()[1]
    messages = [b"one\n", b"two\n"]
    replies = [b""] * len(messages)

    async def ask(index: int) -> None:
        replies[index] = await client(port, messages[index])

    async with server, anyio.create_task_group() as task_group:
        for index in range(len(messages)):
            task_group.start_soon(ask, index)
    return replies


if __name__ == "__main__":
    print(anyio.run(main))  # or anyio.run(main, backend="trio")
