"""The workloads over a hand-written receive buffer on a raw ``trio.SocketStream``.

This is what a trio user writes without a stream library: ``receive_some``
into a ``bytearray``, ``find`` and slice. Consumed bytes are skipped with an
offset and dropped only when the buffer is refilled, and slices are returned
as they come (``bytearray``), so the buffer costs as little as pure Python
allows. Writes are ``send_all``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import trio

from . import patterns
from ._check import Mismatch, check_batch, expect, expect_count
from .workloads import FANIN_CONNECTIONS

PERIOD = patterns.PERIOD_ITEMS
MASK = PERIOD - 1
RECEIVE_SIZE = 65536

Connect = Callable[[], Awaitable[trio.SocketStream]]
Detail = dict[str, int]


class EndOfData(EOFError):
    """The stream ended inside a read; ``partial`` is what was left."""

    def __init__(self, partial: bytes | bytearray) -> None:
        super().__init__(f"{len(partial)} bytes before EOF")
        self.partial = partial


class TrioBuffer:
    """A minimal receive buffer: ``readline``, ``readuntil``, ``readexactly``, ``read``."""

    __slots__ = ("_buffer", "_offset", "_stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._offset = 0

    async def _fill(self) -> bool:
        chunk = await self._stream.receive_some(RECEIVE_SIZE)
        if not chunk:
            return False
        buffer = self._buffer
        if self._offset:
            del buffer[: self._offset]
            self._offset = 0
        buffer += chunk
        return True

    async def readline(self) -> bytearray:
        """The next line including ``\\n``; the rest at EOF (empty when nothing is left)."""
        buffer = self._buffer
        end = buffer.find(b"\n", self._offset)
        while end < 0:
            searched = len(buffer) - self._offset
            if not await self._fill():
                rest = buffer[self._offset :]
                del buffer[:]
                self._offset = 0
                return rest
            end = buffer.find(b"\n", self._offset + searched)
        start = self._offset
        self._offset = end + 1
        return buffer[start : end + 1]

    async def readuntil(self, separator: bytes) -> bytearray:
        """Everything up to and including ``separator``; :class:`EndOfData` at EOF."""
        buffer = self._buffer
        end = buffer.find(separator, self._offset)
        while end < 0:
            searched = max(0, len(buffer) - self._offset - len(separator) + 1)
            if not await self._fill():
                rest = buffer[self._offset :]
                del buffer[:]
                self._offset = 0
                raise EndOfData(rest)
            end = buffer.find(separator, self._offset + searched)
        start = self._offset
        self._offset = end = end + len(separator)
        return buffer[start:end]

    async def readexactly(self, n: int) -> bytearray:
        """Exactly ``n`` bytes, or :class:`EndOfData` at EOF."""
        buffer = self._buffer
        while len(buffer) - self._offset < n:
            if not await self._fill():
                rest = buffer[self._offset :]
                del buffer[:]
                self._offset = 0
                raise EndOfData(rest)
        start = self._offset
        self._offset = end = start + n
        return buffer[start:end]

    async def read(self, n: int) -> bytes | bytearray:
        """Up to ``n`` bytes; ``b""`` at EOF. Unbuffered reads skip the buffer."""
        buffer = self._buffer
        available = len(buffer) - self._offset
        if not available:
            return await self._stream.receive_some(n)
        start = self._offset
        end = start + min(n, available)
        self._offset = end
        return buffer[start:end]

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._offset


def connector(port: int) -> Connect:
    async def connect() -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", port)

    return connect


async def gather(functions: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
    async with trio.open_nursery() as nursery:
        for function in functions:
            nursery.start_soon(function)


async def lines(connect: Connect, size: int) -> Detail:
    stream = await connect()
    reader = TrioBuffer(stream)
    block = patterns.line_block()
    readline = reader.readline
    batch: list[bytearray] = []
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
    await stream.aclose()
    return {"lines": count}


async def frames(connect: Connect, size: int) -> Detail:
    stream = await connect()
    reader = TrioBuffer(stream)
    block = patterns.payload_block()
    readexactly = reader.readexactly
    from_bytes = int.from_bytes
    batch: list[bytearray] = []
    append = batch.append
    count = 0
    while True:
        try:
            header = await readexactly(4)
        except EndOfData as exc:
            expect(not exc.partial, f"EOF inside a frame header: {exc.partial!r}")
            break
        append(await readexactly(from_bytes(header, "big")))
        if len(batch) == PERIOD:
            count = check_batch(batch, block, count)
            batch.clear()
    count = check_batch(batch, block, count)
    expect_count("frames", count, size)
    await stream.aclose()
    return {"frames": count}


async def bulk(connect: Connect, size: int) -> Detail:
    stream = await connect()
    reader = TrioBuffer(stream)
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
    await stream.aclose()
    return {"bytes": received, "chunks": chunks}


async def _round_trips(connect: Connect, size: int, connection: int) -> None:
    stream = await connect()
    reader = TrioBuffer(stream)
    messages = patterns.messages(connection)
    send_all = stream.send_all
    readline = reader.readline
    for i in range(size):
        message = messages[i & MASK]
        await send_all(message)
        reply = await readline()
        if reply != message:
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
    expected = b"%d %d\n" % (total, patterns.upload_checksum(total))
    stream = await connect()
    reader = TrioBuffer(stream)
    chunks = patterns.upload_chunks()
    count = len(chunks)
    send_all = stream.send_all
    for i in range(size):
        await send_all(chunks[i % count])
    await stream.send_eof()
    reply = await reader.readline()
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
