"""TCP echo server using portastreams.start_server() (an example of asyncio's documentation).

Usage: python examples/echo_server.py --backend trio [--host 127.0.0.1] [--port 8888]
"""

import argparse
import signal

import anyio
import anyio.abc

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


async def close_on_ctrl_c(
    server: portastreams.Server,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    # Ctrl+C (or SIGTERM) closes the server: serve_forever() returns, the
    # running handlers finish, and the program exits cleanly on every backend.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            server.close()
            return


async def main(host: str, port: int) -> None:
    server = await portastreams.start_server(handle_echo, host, port)

    async with server, anyio.create_task_group() as tg:
        await tg.start(close_on_ctrl_c, server)
        print(f"Serving on {server.sockets[0].getsockname()}", flush=True)

        # Serve requests until Ctrl+C is pressed.
        await server.serve_forever()
        tg.cancel_scope.cancel()


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8888)
args = parser.parse_args()

backend, options = BACKENDS[args.backend]
anyio.run(main, args.host, args.port, backend=backend, backend_options=options)
