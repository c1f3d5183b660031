"""The workloads written against asyncio's stream API.

Used unchanged by ``asyncio.open_connection`` (on asyncio and uvloop) and by
``portastreams.open_connection`` (on every backend): both return a
``(StreamReader, StreamWriter)`` pair with the same methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from . import patterns
from ._check import Mismatch, check_batch, expect, expect_count
from .workloads import FANIN_CONNECTIONS

PERIOD = patterns.PERIOD_ITEMS
MASK = PERIOD - 1


class Reader(Protocol):
    async def readline(self) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    async def read(self, n: int = -1) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


Connect = Callable[[], Awaitable[tuple[Any, Any]]]
Gather = Callable[[list[Callable[[], Coroutine[Any, Any, None]]]], Awaitable[None]]
Detail = dict[str, int]


async def _close(writer: Writer) -> None:
    writer.close()
    await writer.wait_closed()


async def lines(connect: Connect, size: int, gather: Gather) -> Detail:
    reader, writer = await connect()
    block = patterns.line_block()
    readline = reader.readline
    batch: list[bytes] = []
    append = batch.append
    count = 0
    while True:
        line = await readline()
        if not line:
            break
        append(line)
        if len(batch) == PERIOD:
            count = check_batch(batch, block, count)
            batch.clear()
    count = check_batch(batch, block, count)
    expect_count("lines", count, size)
    await _close(writer)
    return {"lines": count}


async def frames(connect: Connect, size: int, gather: Gather) -> Detail:
    reader, writer = await connect()
    block = patterns.payload_block()
    readexactly = reader.readexactly
    from_bytes = int.from_bytes
    batch: list[bytes] = []
    append = batch.append
    count = 0
    while True:
        try:
            header = await readexactly(4)
        except asyncio.IncompleteReadError as exc:
            expect(not exc.partial, f"EOF inside a frame header: {exc.partial!r}")
            break
        append(await readexactly(from_bytes(header, "big")))
        if len(batch) == PERIOD:
            count = check_batch(batch, block, count)
            batch.clear()
    count = check_batch(batch, block, count)
    expect_count("frames", count, size)
    await _close(writer)
    return {"frames": count}


async def bulk(connect: Connect, size: int, gather: Gather) -> Detail:
    reader, writer = await connect()
    reference = patterns.bulk_reference()
    period = patterns.BULK_PERIOD
    read = reader.read
    received = 0
    chunks = 0
    while True:
        chunk = await read(65536)
        if not chunk:
            break
        if not reference.startswith(chunk, received % period):
            raise Mismatch(f"bulk: chunk at offset {received:,} differs")
        received += len(chunk)
        chunks += 1
    expect_count("bulk bytes", received, size)
    await _close(writer)
    return {"bytes": received, "chunks": chunks}


async def _round_trips(connect: Connect, size: int, connection: int) -> None:
    reader, writer = await connect()
    messages = patterns.messages(connection)
    write = writer.write
    drain = writer.drain
    readline = reader.readline
    for i in range(size):
        message = messages[i & MASK]
        write(message)
        await drain()
        reply = await readline()
        if reply != message:
            raise Mismatch(f"round trip {i}: sent {message!r}, got {reply!r}")
    await _close(writer)


async def pingpong(connect: Connect, size: int, gather: Gather) -> Detail:
    await _round_trips(connect, size, 0)
    return {"round_trips": size}


async def fanin(connect: Connect, size: int, gather: Gather) -> Detail:
    done = [0]

    def client(connection: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            await _round_trips(connect, size, connection)
            done[0] += 1

        return run

    await gather([client(c) for c in range(FANIN_CONNECTIONS)])
    expect_count("fanin connections", done[0], FANIN_CONNECTIONS)
    return {"connections": done[0], "round_trips": size * done[0]}


async def upload(connect: Connect, size: int, gather: Gather) -> Detail:
    total = size * patterns.UPLOAD_CHUNK
    expected = b"%d %d\n" % (total, patterns.upload_checksum(total))
    reader, writer = await connect()
    chunks = patterns.upload_chunks()
    count = len(chunks)
    write = writer.write
    drain = writer.drain
    for i in range(size):
        write(chunks[i % count])
        await drain()
    writer.write_eof()
    reply = await reader.readline()
    expect(reply == expected, f"upload: peer reported {reply!r}, expected {expected!r}")
    await _close(writer)
    return {"bytes": total}


WORKLOADS: dict[str, Callable[[Connect, int, Gather], Awaitable[Detail]]] = {
    "lines": lines,
    "frames": frames,
    "bulk": bulk,
    "pingpong": pingpong,
    "fanin": fanin,
    "upload": upload,
}
