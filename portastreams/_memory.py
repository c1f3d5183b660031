"""In-memory byte streams: a connected pair with no sockets, on any backend.

Each direction is a bounded byte buffer: ``send()`` waits while the buffer is
full (so flow control is exercised as over a socket), ``send_eof()`` is a
half-close, and ``aclose()`` ends both directions -- the peer reads EOF.
:meth:`MemoryByteStream.reset` simulates a connection reset: both ends'
pending and future operations fail with ``anyio.BrokenResourceError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import anyio
from anyio.abc import ByteStream

__all__ = ["MemoryByteStream", "memory_stream_pair"]

#: The default capacity of each direction, in bytes.
DEFAULT_CAPACITY: Final = 64 * 1024


class _Pipe:
    """One direction: bytes written by one end, read by the other."""

    __slots__ = ("broken", "capacity", "data", "eof", "readable", "writable")

    def __init__(self, capacity: int) -> None:
        self.capacity: int = capacity
        self.data: bytearray = bytearray()
        self.eof: bool = False
        self.broken: bool = False
        self.readable: anyio.Event = anyio.Event()
        self.writable: anyio.Event = anyio.Event()

    def wake(self) -> None:
        self.readable.set()
        self.writable.set()


class MemoryByteStream(ByteStream):
    """One end of an in-memory connection (see :func:`memory_stream_pair`)."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._incoming = incoming
        self._outgoing = outgoing
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` bytes; ``anyio.EndOfStream`` once the peer is done."""
        pipe = self._incoming
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if pipe.broken:
                raise anyio.BrokenResourceError
            if pipe.data:
                data = bytes(pipe.data[:max_bytes])
                del pipe.data[:max_bytes]
                pipe.writable.set()
                await anyio.lowlevel.checkpoint()
                return data
            if pipe.eof:
                await anyio.lowlevel.checkpoint()
                raise anyio.EndOfStream
            pipe.readable = anyio.Event()
            await pipe.readable.wait()

    async def send(self, item: bytes) -> None:
        """Append ``item``; waits while the peer's buffer is full."""
        pipe = self._outgoing
        view = memoryview(item)
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if pipe.broken or pipe.eof:
                raise anyio.BrokenResourceError
            if not view:
                await anyio.lowlevel.checkpoint()
                return
            room = pipe.capacity - len(pipe.data)
            if room > 0:
                pipe.data += view[:room]
                view = view[room:]
                pipe.readable.set()
                continue
            pipe.writable = anyio.Event()
            await pipe.writable.wait()

    async def send_eof(self) -> None:
        """Half-close: the peer reads EOF after what was sent."""
        self._outgoing.eof = True
        self._outgoing.wake()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close both directions; the peer reads EOF, its sends fail."""
        if not self._closed:
            self._closed = True
            self._outgoing.eof = True
            self._incoming.eof = True
            self._incoming.data.clear()
            self._outgoing.wake()
            self._incoming.wake()
        await anyio.lowlevel.checkpoint()

    def reset(self) -> None:
        """Break the connection, as a TCP reset: both ends' operations fail."""
        for pipe in (self._incoming, self._outgoing):
            pipe.broken = True
            pipe.data.clear()
            pipe.wake()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {}


def memory_stream_pair(
    capacity: int = DEFAULT_CAPACITY,
) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams, ``capacity`` bytes each way."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1 byte")
    forward, backward = _Pipe(capacity), _Pipe(capacity)
    return MemoryByteStream(backward, forward), MemoryByteStream(forward, backward)
