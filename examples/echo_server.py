"""TCP echo server using portastreams.start_server() (the seed's example).

Usage: python examples/echo_server.py --backend trio [--host 127.0.0.1] [--port 8888]
"""

import argparse
import contextlib

import anyio

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def handle_echo(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info("peername")
    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the client socket")
    writer.close()
    await writer.wait_closed()


async def main(host: str, port: int) -> None:
    server = await portastreams.start_server(handle_echo, host, port)

    print(f"Serving on {server.sockets[0].getsockname()}")

    # Serve requests until Ctrl+C is pressed; leaving the block closes the
    # server and waits for the running handlers.
    async with server:
        await server.serve_forever()


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8888)
args = parser.parse_args()

backend, options = BACKENDS[args.backend]
with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C stops the server
    anyio.run(main, args.host, args.port, backend=backend, backend_options=options)
