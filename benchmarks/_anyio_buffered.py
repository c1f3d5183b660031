"""The workloads written against AnyIO's ``BufferedByteStream``.

``receive_until(b"\\n", 65536)`` for lines (it strips the delimiter),
``receive_exactly`` for frames, ``receive(65536)`` for bulk data, and
``send()`` (AnyIO's write-and-wait) for everything written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteStream

from . import patterns
from ._check import Mismatch, check_batch, expect, expect_count
from .workloads import FANIN_CONNECTIONS

PERIOD = patterns.PERIOD_ITEMS
MASK = PERIOD - 1

Connect = Callable[[], Awaitable[BufferedByteStream]]
Detail = dict[str, int]


def connector(port: int) -> Connect:
    async def connect() -> BufferedByteStream:
        return BufferedByteStream(await anyio.connect_tcp("127.0.0.1", port))

    return connect


async def gather(functions: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
    async with anyio.create_task_group() as group:
        for function in functions:
            group.start_soon(function)


async def lines(connect: Connect, size: int) -> Detail:
    stream = await connect()
    block = patterns.stripped_line_block()
    receive_until = stream.receive_until
    batch: list[bytes] = []
    append = batch.append
    count = 0
    try:
        while True:
            append(await receive_until(b"\n", 65536))
            if len(batch) == PERIOD:
                count = check_batch(batch, block, count)
                batch.clear()
    except anyio.IncompleteRead:
        pass
    expect(not stream.buffer, f"partial line at EOF: {stream.buffer[:64]!r}")
    count = check_batch(batch, block, count)
    expect_count("lines", count, size)
    await stream.aclose()
    return {"lines": count}


async def frames(connect: Connect, size: int) -> Detail:
    stream = await connect()
    block = patterns.payload_block()
    receive_exactly = stream.receive_exactly
    from_bytes = int.from_bytes
    batch: list[bytes] = []
    append = batch.append
    count = 0
    try:
        while True:
            header = await receive_exactly(4)
            append(await receive_exactly(from_bytes(header, "big")))
            if len(batch) == PERIOD:
                count = check_batch(batch, block, count)
                batch.clear()
    except anyio.IncompleteRead:
        pass
    expect(not stream.buffer, f"partial frame at EOF: {stream.buffer[:64]!r}")
    count = check_batch(batch, block, count)
    expect_count("frames", count, size)
    await stream.aclose()
    return {"frames": count}


async def bulk(connect: Connect, size: int) -> Detail:
    stream = await connect()
    reference = patterns.bulk_reference()
    period = patterns.BULK_PERIOD
    receive = stream.receive
    received = 0
    chunks = 0
    try:
        while True:
            chunk = await receive(65536)
            if not reference.startswith(chunk, received % period):
                raise Mismatch(f"bulk: chunk at offset {received:,} differs")
            received += len(chunk)
            chunks += 1
    except anyio.EndOfStream:
        pass
    expect_count("bulk bytes", received, size)
    await stream.aclose()
    return {"bytes": received, "chunks": chunks}


async def _round_trips(connect: Connect, size: int, connection: int) -> None:
    stream = await connect()
    messages = patterns.messages(connection)
    send = stream.send
    receive_until = stream.receive_until
    for i in range(size):
        message = messages[i & MASK]
        await send(message)
        reply = await receive_until(b"\n", 65536)
        if reply != message[:-1]:
            raise Mismatch(f"round trip {i}: sent {message!r}, got {reply!r}")
    await stream.aclose()


async def pingpong(connect: Connect, size: int) -> Detail:
    await _round_trips(connect, size, 0)
    return {"round_trips": size}


async def fanin(connect: Connect, size: int) -> Detail:
    done = [0]

    def client(connection: int) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            await _round_trips(connect, size, connection)
            done[0] += 1

        return run

    await gather([client(c) for c in range(FANIN_CONNECTIONS)])
    expect_count("fanin connections", done[0], FANIN_CONNECTIONS)
    return {"connections": done[0], "round_trips": size * done[0]}


async def upload(connect: Connect, size: int) -> Detail:
    total = size * patterns.UPLOAD_CHUNK
    expected = b"%d %d" % (total, patterns.upload_checksum(total))
    stream = await connect()
    chunks = patterns.upload_chunks()
    count = len(chunks)
    send = stream.send
    for i in range(size):
        await send(chunks[i % count])
    await stream.send_eof()
    reply = await stream.receive_until(b"\n", 65536)
    expect(reply == expected, f"upload: peer reported {reply!r}, expected {expected!r}")
    await stream.aclose()
    return {"bytes": total}


WORKLOADS: dict[str, Callable[[Connect, int], Awaitable[Detail]]] = {
    "lines": lines,
    "frames": frames,
    "bulk": bulk,
    "pingpong": pingpong,
    "fanin": fanin,
    "upload": upload,
}
