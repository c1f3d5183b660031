"""The deterministic data the peer sends or expects, and the client checks.

Standard library only: the peer imports this module and must start fast.
Every stream is periodic, so either side can build or check any amount of it
from one small block, and a client can verify a whole run at ``memcmp``
speed:

* **lines** -- a block of 1024 distinct 64-byte lines (64 KiB), repeated;
* **frames** -- a block of 1024 distinct frames (4-byte big-endian length 60,
  then 60 bytes of payload), repeated;
* **bulk** -- pseudo-random bytes with a prime period (65521), so chunk
  boundaries never line up with the period and a dropped, repeated or
  reordered chunk shifts everything after it;
* **upload** -- 16 distinct 64 KiB chunks sent in turn (a 1 MiB period); the
  peer compares every aligned 1 MiB block with the expected one and reports
  the byte count and a two-level adler32 (adler32 over the blocks' adler32s),
  computing a block's adler32 only when it differs from the expected block;
* **pingpong / fanin** -- 1024 distinct 16-byte lines per connection.
"""

from __future__ import annotations

import functools
import random
import zlib
from typing import Final

#: Lines and frames are 64 bytes each, as in the workload definitions.
ITEM_SIZE: Final = 64
#: Distinct lines / frames / messages before the pattern repeats.
PERIOD_ITEMS: Final = 1024
#: Frame payload size (the frame is a 4-byte length header plus this).
FRAME_PAYLOAD: Final = ITEM_SIZE - 4
#: The period of the bulk stream: prime, so it never aligns with a read size.
BULK_PERIOD: Final = 65521
#: Upload chunk size (one ``write()``).
UPLOAD_CHUNK: Final = 64 * 1024
#: Distinct upload chunks; their concatenation is one verification block.
UPLOAD_CHUNKS: Final = 16
#: The peer's verification block for uploads (1 MiB).
UPLOAD_BLOCK: Final = UPLOAD_CHUNK * UPLOAD_CHUNKS
#: Round-trip messages are 16-byte lines.
MESSAGE_SIZE: Final = 16
#: The bytes a peer sends in one ``sendall`` (about 4 MiB of whole periods).
SEND_SIZE: Final = 4 * 1024 * 1024


def _filler(seed: int, size: int) -> bytes:
    """``size`` printable bytes determined by ``seed``."""
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    rng = random.Random(seed)
    return bytes(rng.choice(alphabet) for _ in range(size))


@functools.cache
def lines() -> tuple[bytes, ...]:
    """The 1024 distinct lines of a period, each 64 bytes ending in ``\\n``."""
    return tuple(
        b"%06d:" % i + _filler(i, ITEM_SIZE - 8) + b"\n" for i in range(PERIOD_ITEMS)
    )


@functools.cache
def line_block() -> bytes:
    """One period of the lines stream (64 KiB)."""
    return b"".join(lines())


@functools.cache
def stripped_line_block() -> bytes:
    """One period of lines without their newlines (what ``receive_until`` returns)."""
    return b"".join(line[:-1] for line in lines())


@functools.cache
def frame_payloads() -> tuple[bytes, ...]:
    """The 1024 distinct frame payloads of a period, 60 bytes each."""
    return tuple(
        b"%06d|" % i + _filler(10_000 + i, FRAME_PAYLOAD - 8) + b"|"
        for i in range(PERIOD_ITEMS)
    )


@functools.cache
def frame_block() -> bytes:
    """One period of the frames stream (64 KiB): length headers and payloads."""
    header = FRAME_PAYLOAD.to_bytes(4, "big")
    return b"".join(header + payload for payload in frame_payloads())


@functools.cache
def payload_block() -> bytes:
    """One period of frame payloads without headers (what a client collects)."""
    return b"".join(frame_payloads())


@functools.cache
def bulk_period() -> bytes:
    """One period of the bulk stream: 65521 pseudo-random bytes."""
    return random.Random(20_240_611).randbytes(BULK_PERIOD)


@functools.cache
def bulk_reference(max_chunk: int = 1 << 18) -> bytes:
    """The bulk stream from offset 0, long enough to hold any chunk at any phase.

    A chunk of ``n <= max_chunk`` bytes received at stream offset ``p`` must
    equal ``reference[p % BULK_PERIOD : p % BULK_PERIOD + n]``; check it with
    ``reference.startswith(chunk, p % BULK_PERIOD)`` (no copy).
    """
    period = bulk_period()
    return period * (2 + max_chunk // BULK_PERIOD)


@functools.cache
def upload_chunks() -> tuple[bytes, ...]:
    """The 16 distinct 64 KiB chunks an upload writes in turn."""
    rng = random.Random(77_777)
    return tuple(rng.randbytes(UPLOAD_CHUNK) for _ in range(UPLOAD_CHUNKS))


@functools.cache
def upload_block() -> bytes:
    """One period of the upload stream (1 MiB), the peer's verification block."""
    return b"".join(upload_chunks())


def fold_checksum(accumulator: int, block_checksum: int) -> int:
    """Fold one block's adler32 into the two-level upload checksum."""
    return zlib.adler32(block_checksum.to_bytes(4, "big"), accumulator)


@functools.cache
def upload_checksum(total: int) -> int:
    """The two-level checksum the peer must report for a correct upload of ``total`` bytes."""
    block = upload_block()
    full_sum = zlib.adler32(block)
    accumulator = 1
    full, rest = divmod(total, UPLOAD_BLOCK)
    for _ in range(full):
        accumulator = fold_checksum(accumulator, full_sum)
    if rest:
        accumulator = fold_checksum(accumulator, zlib.adler32(block[:rest]))
    return accumulator


@functools.cache
def messages(connection: int = 0) -> tuple[bytes, ...]:
    """The 1024 distinct 16-byte round-trip lines of one connection."""
    return tuple(b"%07d:%07d\n" % (connection, i) for i in range(PERIOD_ITEMS))


def send_block(period: bytes) -> bytes:
    """Whole periods of ``period`` adding up to about :data:`SEND_SIZE` bytes."""
    return period * max(1, SEND_SIZE // len(period))
