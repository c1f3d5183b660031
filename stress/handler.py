"""The server-side handler of the stress protocol, and its ledger.

One coroutine function, :func:`handle`, runs unchanged on portastreams'
``start_server`` (every backend) and on asyncio's own ``asyncio.start_server``
(the control): it only uses the stream API the two share. It lets connection
errors escape, as a typical handler does, so that the server's own handling
of handler failures is what gets measured.

The :class:`Ledger` records, per connection id (see :mod:`stress.wire`), how
many bytes the handler wrote, how many of them it wrote while the writer was
still open, how many bytes it read, and how the handler ended. Comparing it
with what clients received is how every experiment verifies "no byte lost".
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from . import wire


class Reader(Protocol):
    """What the handler needs of a stream reader (portastreams' or asyncio's)."""

    async def readline(self) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    async def read(self, n: int = -1) -> bytes: ...


class Writer(Protocol):
    """What the handler needs of a stream writer (portastreams' or asyncio's)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...


@dataclass
class Entry:
    """One connection, as its handler saw it."""

    mode: str
    #: Bytes passed to ``write()``.
    written: int = 0
    #: Bytes passed to ``write()`` while ``is_closing()`` was False: a server
    #: that closes gracefully delivers at least these.
    written_open: int = 0
    #: Bytes read, the header included.
    read: int = 0
    #: ``"running"``, ``"returned"``, ``"cancelled"`` or ``"raised <Type>"``.
    result: str = "running"

    def as_json(self) -> list[Any]:
        return [self.mode, self.written, self.written_open, self.read, self.result]


@dataclass
class Stats:
    """Counters over every connection of one server."""

    started: int = 0
    finished: int = 0
    #: Exceptions that escaped the handler, by type name.
    escaped: Counter[str] = field(default_factory=Counter)
    overlong_lines: int = 0
    truncated_frames: int = 0
    oversized_frames: int = 0
    handler_timeouts: int = 0
    first_start: float | None = None
    last_start: float | None = None

    @property
    def live(self) -> int:
        return self.started - self.finished

    def as_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": self.finished,
            "live": self.live,
            "escaped": dict(self.escaped),
            "overlong_lines": self.overlong_lines,
            "truncated_frames": self.truncated_frames,
            "oversized_frames": self.oversized_frames,
            "handler_timeouts": self.handler_timeouts,
            "first_start": self.first_start,
            "last_start": self.last_start,
        }


class Ledger:
    """Per-connection entries by connection id, and the server's :class:`Stats`."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.stats = Stats()

    def reset(self) -> None:
        self.entries.clear()
        self.stats = Stats()

    async def handle(self, reader: Reader, writer: Writer) -> None:
        """The ``client_connected_cb``: count, run :func:`handle`, let errors escape."""
        stats = self.stats
        stats.started += 1
        now = time.monotonic()
        if stats.first_start is None:
            stats.first_start = now
        stats.last_start = now
        entry = Entry(mode="")
        try:
            await handle(reader, _CountingWriter(writer, entry), entry, self)
        except anyio.get_cancelled_exc_class():
            entry.result = "cancelled"
            raise
        except BaseException as exc:
            entry.result = f"raised {type(exc).__name__}"
            stats.escaped[type(exc).__name__] += 1
            raise
        else:
            entry.result = "returned"
        finally:
            stats.finished += 1
            # The asyncio control does not close the writer when the handler
            # ends; portastreams does. Closing here too keeps them alike.
            writer.close()


class _CountingWriter:
    """A writer wrapper that records written bytes in the connection's entry."""

    def __init__(self, writer: Writer, entry: Entry) -> None:
        self._writer = writer
        self._entry = entry

    def write(self, data: bytes) -> None:
        self._entry.written += len(data)
        if not self._writer.is_closing():
            self._entry.written_open += len(data)
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()


async def _read_exactly(reader: Reader, entry: Entry, n: int) -> bytes:
    data = await reader.readexactly(n)
    entry.read += len(data)
    return data


async def handle(reader: Reader, writer: Writer, entry: Entry, ledger: Ledger) -> None:
    """Serve one connection of the stress protocol (see :mod:`stress.wire`)."""
    try:
        first = await _read_exactly(reader, entry, 1 + wire.CONNECTION_ID.size)
    except EOFError:  # IncompleteReadError: gone before sending a header
        entry.mode = "-"
        return
    mode = first[:1]
    (connection_id,) = wire.CONNECTION_ID.unpack_from(first, 1)
    entry.mode = mode.decode("latin-1")
    ledger.entries[connection_id] = entry
    stats = ledger.stats
    if mode == wire.ECHO:
        await _echo_lines(reader, writer, entry, stats)
    elif mode == wire.FRAMES:
        await _frames(reader, writer, entry, stats)
    elif mode == wire.DOWNLOAD:
        size_and_deadline = await _read_exactly(
            reader, entry, wire.SIZE.size + wire.MILLISECONDS.size
        )
        (size,) = wire.SIZE.unpack_from(size_and_deadline)
        (deadline,) = wire.MILLISECONDS.unpack_from(size_and_deadline, wire.SIZE.size)
        with anyio.move_on_after(deadline / 1000 if deadline else None) as scope:
            offset = 0
            while offset < size:
                step = min(wire.DOWNLOAD_CHUNK, size - offset)
                writer.write(wire.pattern(offset, step))
                offset += step
                await writer.drain()
        if scope.cancelled_caught:
            stats.handler_timeouts += 1
    elif mode == wire.WRITE_NO_DRAIN:
        (size,) = wire.SIZE.unpack(await _read_exactly(reader, entry, wire.SIZE.size))
        offset = 0
        while offset < size:
            step = min(wire.SMALL_WRITE, size - offset)
            writer.write(wire.pattern(offset, step))
            offset += step
            await anyio.lowlevel.checkpoint()
    elif mode == wire.UPLOAD:
        offset = 0
        bad: int | None = None
        while data := await reader.read(65536):
            entry.read += len(data)
            if bad is None:
                bad = wire.pattern_mismatch(offset, data)
            offset += len(data)
        writer.write(b"OK %d\n" % offset if bad is None else b"BAD %d\n" % bad)
    elif mode == wire.RAISE:
        (count,) = await _read_exactly(reader, entry, 1)
        for _ in range(count):
            line = await reader.readline()
            entry.read += len(line)
            writer.write(line)
        writer.write(wire.FAILING)
        raise RuntimeError("stress: a handler failing on purpose")
    elif mode == wire.MEMORY_ERROR:
        raise MemoryError("stress: cannot allocate the connection's state")
    elif mode == wire.TIMEOUT:
        (deadline,) = wire.MILLISECONDS.unpack(
            await _read_exactly(reader, entry, wire.MILLISECONDS.size)
        )
        with anyio.move_on_after(deadline / 1000):
            while line := await reader.readline():
                entry.read += len(line)
                writer.write(line)
            return
        stats.handler_timeouts += 1
        writer.write(wire.TIMED_OUT)
    else:
        writer.write(wire.UNKNOWN_MODE)


async def _echo_lines(
    reader: Reader, writer: Writer, entry: Entry, stats: Stats
) -> None:
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # longer than the limit: skipped, never answered
            stats.overlong_lines += 1
            continue
        entry.read += len(line)
        if not line.endswith(b"\n"):
            return  # EOF, possibly after a partial line
        writer.write(line)
        await writer.drain()


async def _frames(reader: Reader, writer: Writer, entry: Entry, stats: Stats) -> None:
    while True:
        try:
            head = await _read_exactly(reader, entry, wire.FRAME_HEADER.size)
        except EOFError as exc:
            if getattr(exc, "partial", b""):
                stats.truncated_frames += 1
            return
        (length,) = wire.FRAME_HEADER.unpack(head)
        if length > wire.MAX_FRAME:
            stats.oversized_frames += 1
            writer.write(wire.OVERSIZED)
            return
        try:
            payload = await _read_exactly(reader, entry, length)
        except EOFError:
            stats.truncated_frames += 1
            return
        writer.write(head + payload[::-1])
        await writer.drain()
