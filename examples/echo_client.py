"""TCP echo client using portastreams.open_connection() (an example of asyncio's documentation).

Usage: python examples/echo_client.py --backend trio [--host 127.0.0.1] [--port 8888]
"""

import argparse

import anyio

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def tcp_echo_client(message: str, host: str, port: int) -> None:
    reader, writer = await portastreams.open_connection(host, port)

    print(f"Send: {message!r}")
    writer.write(message.encode())

    data = await reader.read(100)
    print(f"Received: {data.decode()!r}")

    print("Close the socket")
    writer.close()
    await writer.wait_closed()


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8888)
args = parser.parse_args()

message = "Hello World!"
backend, options = BACKENDS[args.backend]
anyio.run(
    tcp_echo_client,
    message,
    args.host,
    args.port,
    backend=backend,
    backend_options=options,
)
