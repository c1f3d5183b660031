"""Register an open socket to wait for data using streams (an example of asyncio's documentation).

Usage: python examples/wait_for_data.py --backend trio
"""

import argparse
from socket import socket, socketpair

import anyio

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def send_soon(sock: socket, data: bytes) -> None:
    await anyio.sleep(0.1)
    sock.send(data)


async def wait_for_data() -> None:
    # Create a pair of connected sockets
    rsock, wsock = socketpair()

    # Register the open socket to wait for data
    reader, writer = await portastreams.open_connection(sock=rsock)

    async with anyio.create_task_group() as tg:
        # Simulate the reception of data from the network
        tg.start_soon(send_soon, wsock, b"abc")

        # Wait for data
        data = await reader.read(100)

    # Got data, we are done: close the socket
    print("Received:", data.decode())
    writer.close()
    await writer.wait_closed()

    # Close the second socket
    wsock.close()


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
args = parser.parse_args()

backend, options = BACKENDS[args.backend]
anyio.run(wait_for_data, backend=backend, backend_options=options)
