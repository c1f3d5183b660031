"""Step 8: testing protocol code without a network, on asyncio and trio.

``handle_commands`` is step 2's line protocol. The test drives it over
``portastreams.testing.connected_pair()``: two connected reader/writer pairs
in memory, with flow control, on any backend. ``check_my_transport`` runs the
whole connection contract over a stream of our own making.
"""

import contextlib
from collections.abc import AsyncIterator

import anyio
from anyio.abc import ByteStream

import portastreams
from portastreams.testing import (
    ConnectionEnd,
    check_connection_contract,
    connected_pair,
    memory_stream_pair,
)

from step2_lines import handle_commands


async def serve(
    reader: portastreams.StreamReader, writer: portastreams.StreamWriter
) -> None:
    """What a server does with a handler: run it, then close the connection."""
    try:
        await handle_commands(reader, writer)
    finally:
        writer.close()


async def test_handle_commands() -> list[bytes]:
    """Run the handler on one end, talk to it from the other."""
    async with connected_pair(limit=64) as (client, server):
        reader, writer = client
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(serve, *server)
            writer.write(b"hello\n")
            writer.write(b"x" * 100 + b"\n")
            writer.write_eof()
            replies = [line async for line in reader]
    assert replies == [b"HELLO\n", b"ERR line too long\n"]
    return replies


class CountingStream(ByteStream):
    """A stream of our own: it counts the bytes sent through another stream."""

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.sent = 0

    async def send(self, item: bytes) -> None:
        self.sent += len(item)
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def check_my_transport() -> list[str]:
    """Check that readers and writers over CountingStream keep the contract."""

    @contextlib.asynccontextmanager
    async def make_pair(
        limit: int,
    ) -> AsyncIterator[tuple[ConnectionEnd, ConnectionEnd]]:
        left, right = memory_stream_pair()
        client = portastreams.wrap_stream(CountingStream(left), limit=limit)
        server = portastreams.wrap_stream(CountingStream(right), limit=limit)
        try:
            yield client, server
        finally:
            for _reader, writer in (client, server):
                writer.transport.abort()
                await writer.wait_closed()

    return await check_connection_contract(make_pair)


async def main() -> None:
    print(await test_handle_commands())
    checked = await check_my_transport()
    print(f"{len(checked)} contract checks passed")


if __name__ == "__main__":
    anyio.run(main)
