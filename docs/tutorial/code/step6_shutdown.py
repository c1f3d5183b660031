"""Step 6: a long-running server that shuts down gracefully on SIGINT or SIGTERM."""

import signal
import sys

import anyio
from anyio.abc import TaskStatus

import portastreams


async def handle_chat(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    async for line in reader:  # until the client leaves, or we close the connection
        writer.write(b"> " + line)
        await writer.drain()


async def serve(
    port: int,
    shutdown: anyio.Event,
    grace: float = 5.0,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    server = await portastreams.start_server(handle_chat, "127.0.0.1", port)
    async with anyio.create_task_group() as task_group:
        await task_group.start(server.serve_forever)  # returns once accepting
        task_status.started(server.sockets[0].getsockname()[1])
        await shutdown.wait()
        server.close()  # 1. stop accepting; the handlers keep running
        with anyio.move_on_after(grace):
            await server.wait_closed()  # 2. give them time to finish on their own
        server.close_clients()  # 3. close the rest: their reads return EOF
        await server.wait_closed()
    # serve_forever() has returned, and so has every handler.


async def main(
    port: int = 8888,
    grace: float = 5.0,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    shutdown = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve, port, shutdown, grace)
            print(f"Serving on port {port}; press Ctrl+C to stop")
            task_status.started(port)
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: shutting down")
                shutdown.set()
                break
    print("Server stopped")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 8888)
