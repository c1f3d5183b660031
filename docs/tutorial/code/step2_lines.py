"""Step 2: a line protocol, one command per line, with a limit on line length."""

import anyio

import portastreams

#: The longest line the server accepts (not counting the newline).
LIMIT = 64


async def handle_commands(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    while True:
        try:
            line = await reader.readline()
        except ValueError:
            # Longer than the limit: readline() has dropped the line.
            writer.write(b"ERR line too long\n")
            continue
        if not line:  # b"": the client has finished sending
            break
        command = line.rstrip(b"\n").decode(errors="replace")
        writer.write(command.upper().encode() + b"\n")


async def main(port: int = 0) -> list[bytes]:
    server = await portastreams.start_server(
        handle_commands, "127.0.0.1", port, limit=LIMIT
    )
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await portastreams.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        writer.write(b"x" * 100 + b"\n")
        writer.write(b"still there?\n")
        writer.write_eof()  # no more commands: the server's readline() returns b""
        replies = [reply async for reply in reader]  # line by line, until EOF
        writer.close()
        await writer.wait_closed()
    for reply in replies:
        print(reply)
    return replies


if __name__ == "__main__":
    anyio.run(main)
