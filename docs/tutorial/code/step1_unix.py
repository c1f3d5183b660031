"""Step 1, continued: the echo server on a Unix domain socket."""

import os
import tempfile

import anyio

import portastreams

from step1_echo import handle_echo


async def main(path: str) -> bytes:
    server = await portastreams.start_unix_server(handle_echo, path)
    async with server:
        reader, writer = await portastreams.open_unix_connection(path)
        writer.write(b"Hello over a Unix socket!\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
    # Leaving the block closed the server and removed the socket file.
    print(f"Received: {reply!r}")
    return reply


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, os.path.join(directory, "echo.sock"))
