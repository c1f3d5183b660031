"""Resource leaks: many connect/close cycles leave no descriptor and no task behind.

Each test runs 1,000 connect/write/read/close cycles against one portastreams
server and compares the process's open file descriptors and the event loop's
tasks before and after. Closing is partly asynchronous (the server closes its
side when the handler returns; a flusher task closes the stream), so the
final figures are taken once the server is idle again, waiting at most a
couple of seconds for the counts to come back: no tolerance is allowed on
the final values. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from sockets import Kind, fd_count

import portastreams
from portastreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio

Pair = tuple[StreamReader, StreamWriter]

CYCLES = 1000
#: Fewer for the abort variant, which only adds the error paths.
ABORT_CYCLES = 300


def task_count(backend_name: str) -> int:
    """Every task of the running event loop."""
    if backend_name != "trio":
        return len(asyncio.all_tasks())
    import trio

    root = trio.lowlevel.current_root_task()
    assert root is not None
    count = 0
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def settle(
    expected: tuple[int, int], measure: Callable[[], tuple[int, int]]
) -> None:
    """Give asynchronous closing up to two seconds to bring the counts back."""
    with anyio.move_on_after(2):
        while measure() != expected:
            await anyio.sleep(0.01)


async def echo_byte(reader: StreamReader, writer: StreamWriter) -> None:
    data = await reader.read(1)
    writer.write(data)


async def run_cycles(
    connect: Callable[[], Awaitable[Pair]],
    backend_name: str,
    label: str,
    cycle: Callable[[Pair], Awaitable[None]],
    cycles: int = CYCLES,
) -> None:
    def measure() -> tuple[int, int]:
        return fd_count(), task_count(backend_name)

    for _ in range(10):  # warm up lazily opened resources (uvloop's /dev/null)
        await cycle(await connect())
    # The warm-up's server-side closes finish asynchronously: start from
    # counts that have stopped moving.
    start = measure()
    with anyio.move_on_after(2):
        while True:
            await anyio.sleep(0.05)
            if (now := measure()) == start:
                break
            start = now
    # The measure sees connections: one open pair adds descriptors.
    probe = await connect()
    assert fd_count() > start[0]
    await cycle(probe)
    await settle(start, measure)
    assert measure() == start
    peak = start
    for number in range(cycles):
        await cycle(await connect())
        if number % 50 == 0:
            current = measure()
            peak = (max(peak[0], current[0]), max(peak[1], current[1]))
    await settle(start, measure)
    end = measure()
    print(
        f"\n[{label}] {cycles} cycles: fds {start[0]} -> {end[0]} (peak {peak[0]}), "
        f"tasks {start[1]} -> {end[1]} (peak {peak[1]})"
    )
    assert end == start


async def start_server(
    kind: Kind, directory: Path
) -> tuple[portastreams.Server, Callable[[], Awaitable[Pair]]]:
    if kind == "tcp":
        server = await portastreams.start_server(echo_byte, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def connect() -> Pair:
            return await portastreams.open_connection("127.0.0.1", port)

        return server, connect
    path = str(directory / "server.sock")
    server = await portastreams.start_unix_server(echo_byte, path)

    async def connect_unix() -> Pair:
        return await portastreams.open_unix_connection(path)

    return server, connect_unix


async def test_connect_close_cycles_leak_nothing(
    kind: Kind, sock_dir: Path, backend_name: str
) -> None:
    async def cycle(pair: Pair) -> None:
        reader, writer = pair
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        writer.close()
        await writer.wait_closed()

    with anyio.fail_after(60):
        server, connect = await start_server(kind, sock_dir)
        async with server:
            await run_cycles(connect, backend_name, f"{backend_name}-{kind}", cycle)


async def test_aborted_cycles_leak_nothing(
    kind: Kind, sock_dir: Path, backend_name: str
) -> None:
    """The client aborts without reading: the server side must clean up too."""

    async def cycle(pair: Pair) -> None:
        _reader, writer = pair
        writer.write(b"y")
        await writer.drain()
        writer.transport.abort()
        await writer.wait_closed()

    with anyio.fail_after(60):
        server, connect = await start_server(kind, sock_dir)
        async with server:
            await run_cycles(
                connect,
                backend_name,
                f"{backend_name}-{kind} abort",
                cycle,
                ABORT_CYCLES,
            )


async def test_server_start_close_cycles_leak_nothing(
    kind: Kind, sock_dir: Path, backend_name: str
) -> None:
    def measure() -> tuple[int, int]:
        return fd_count(), task_count(backend_name)

    async def one_server() -> None:
        server, connect = await start_server(kind, sock_dir)
        async with server:
            reader, writer = await connect()
            writer.write(b"z")
            assert await reader.read() == b"z"
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()

    with anyio.fail_after(60):
        await one_server()
        start = measure()
        for _ in range(100):
            await one_server()
        await settle(start, measure)
        assert measure() == start
