"""The stress protocol: what clients send, what the handler answers, how to check it.

Every connection starts with a header: one *mode* byte and an 8-byte
connection id (big-endian), followed by the mode's arguments. The id lets the
orchestrator match what a client received with what the server's handler
wrote on that connection (the server keeps a ledger by id).

Modes (the handler is :func:`stress.handler.handle`):

``E`` echo lines
    Echo every line (``readline()``). An over-long line (``ValueError`` from
    ``readline``) is skipped and counted, never answered: a client that sends
    a huge blob without a separator, then ``b"\\n"``, then ``b"PING\\n"``,
    receives at most the tail of the blob (one line) and then ``b"PING\\n"``.
``F`` frames
    4-byte big-endian length, payload; the answer is the same header with the
    payload reversed. A length above :data:`MAX_FRAME` is answered with
    :data:`OVERSIZED` and the handler returns. A stream that ends inside a
    frame ends the handler quietly.
``D`` download
    Arguments: 8-byte size, 2-byte deadline in ms (0: none). The handler
    writes ``size`` bytes of :func:`pattern` in 64 KiB writes, awaiting
    ``drain()`` after each, inside ``anyio.move_on_after(deadline)``.
``W`` write without drain
    Argument: 8-byte size. 1 KiB writes with a bare checkpoint between them,
    never ``drain()``: data piles up in the write buffer.
``U`` upload
    The client sends :func:`pattern` bytes until EOF; the handler checks them
    and answers ``b"OK <n>\\n"`` or ``b"BAD <offset>\\n"``.
``R`` raise
    Argument: 1-byte count ``n``. Echo ``n`` lines, write :data:`FAILING`,
    then raise ``RuntimeError``.
``M`` memory error
    The handler raises ``MemoryError`` at once: it "cannot allocate its
    connection state".
``T`` timeout (cancelled handler)
    Argument: 2-byte deadline in ms. Echo lines inside
    ``anyio.move_on_after(deadline)``; when the deadline cancels the read,
    write :data:`TIMED_OUT` and return.

Any other first byte is answered with :data:`UNKNOWN_MODE`, and the handler
returns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

ECHO: Final = b"E"
FRAMES: Final = b"F"
DOWNLOAD: Final = b"D"
WRITE_NO_DRAIN: Final = b"W"
UPLOAD: Final = b"U"
RAISE: Final = b"R"
MEMORY_ERROR: Final = b"M"
TIMEOUT: Final = b"T"
MODES: Final = (
    ECHO,
    FRAMES,
    DOWNLOAD,
    WRITE_NO_DRAIN,
    UPLOAD,
    RAISE,
    MEMORY_ERROR,
    TIMEOUT,
)

CONNECTION_ID: Final = struct.Struct("!Q")
SIZE: Final = struct.Struct("!Q")
MILLISECONDS: Final = struct.Struct("!H")
FRAME_HEADER: Final = struct.Struct("!I")

#: The largest frame payload the ``F`` handler accepts.
MAX_FRAME: Final = 1024 * 1024
#: The ``F`` handler's answer to a frame above :data:`MAX_FRAME`.
OVERSIZED: Final = b"\xff\xff\xff\xff"
#: What the ``R`` handler writes just before it raises.
FAILING: Final = b"failing\n"
#: What the ``T`` handler writes when its deadline cancelled the read.
TIMED_OUT: Final = b"timed out\n"
#: The answer to an unknown mode byte.
UNKNOWN_MODE: Final = b"?\n"
#: The chunk size of the ``D`` handler's writes.
DOWNLOAD_CHUNK: Final = 64 * 1024
#: The chunk size of the ``W`` handler's writes.
SMALL_WRITE: Final = 1024

#: The period of :func:`pattern`: a prime, so that a shifted or repeated
#: chunk never lines up with the pattern by accident.
PERIOD: Final = 251
_PATTERN_SPAN: Final = 1 << 20
_PATTERN: Final = bytes(i % PERIOD for i in range(_PATTERN_SPAN + PERIOD))


def header(mode: bytes, connection_id: int) -> bytes:
    """The first bytes of a connection: mode and id."""
    return mode + CONNECTION_ID.pack(connection_id)


def pattern(offset: int, size: int) -> bytes:
    """``size`` bytes of the verification pattern, starting at stream offset ``offset``."""
    start = offset % PERIOD
    if size <= _PATTERN_SPAN:
        return _PATTERN[start : start + size]
    parts = []
    while size > 0:
        step = min(size, _PATTERN_SPAN)
        parts.append(pattern(offset, step))
        offset += step
        size -= step
    return b"".join(parts)


def pattern_mismatch(offset: int, data: bytes | bytearray | memoryview) -> int | None:
    """The stream offset of the first byte of ``data`` that breaks the pattern, or None."""
    view = memoryview(data)
    position = 0
    while position < len(view):
        step = min(len(view) - position, _PATTERN_SPAN)
        expected = pattern(offset + position, step)
        chunk = view[position : position + step]
        if chunk != expected:
            for index in range(step):
                if chunk[index] != expected[index]:
                    return offset + position + index
        position += step
    return None


def frame(payload: bytes) -> bytes:
    """One ``F`` frame: length header and payload."""
    return FRAME_HEADER.pack(len(payload)) + payload


@dataclass(frozen=True)
class FrameReplies:
    """What the ``F`` handler answers to a byte stream that then ends (EOF)."""

    #: Every byte the handler writes.
    reply: bytes
    #: True if the handler stops at an oversized frame (and closes with
    #: input possibly unread: the peer may see a reset after the reply).
    oversized: bool


def expected_frame_replies(sent: bytes) -> FrameReplies:
    """Simulate the ``F`` handler on ``sent`` (everything after the header), then EOF."""
    replies = []
    position = 0
    while position + FRAME_HEADER.size <= len(sent):
        (length,) = FRAME_HEADER.unpack_from(sent, position)
        if length > MAX_FRAME:
            replies.append(OVERSIZED)
            return FrameReplies(b"".join(replies), oversized=True)
        start = position + FRAME_HEADER.size
        if start + length > len(sent):
            break  # truncated: the handler ends quietly at EOF
        payload = sent[start : start + length]
        replies.append(FRAME_HEADER.pack(length) + payload[::-1])
        position = start + length
    return FrameReplies(b"".join(replies), oversized=False)
