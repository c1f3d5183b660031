"""The workloads: what a client does against which peer mode, at which size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from . import patterns

__all__ = ["FANIN_CONNECTIONS", "WORKLOADS", "Workload", "workload_names"]

#: Concurrent connections in the fanin workload (not scaled).
FANIN_CONNECTIONS: Final = 200


@dataclass(frozen=True)
class Workload:
    """One workload. ``full_size`` counts ``unit`` at ``--scale 1``."""

    name: str
    description: str
    full_size: int
    unit: str
    #: Latency-bound: client and peer are pinned to the same CPU.
    latency: bool = False
    #: The size never goes below this, whatever the scale.
    minimum: int = 1

    def size(self, scale: float) -> int:
        """The size at ``scale`` (items, bytes or round trips, see ``unit``)."""
        return max(self.minimum, round(self.full_size * scale))

    def describe_size(self, size: int) -> str:
        """A human-readable size, e.g. ``2,000,000 lines`` or ``2.00 GiB``."""
        if self.unit == "bytes":
            return _human_bytes(size)
        if self.unit == "chunks":
            return f"{_human_bytes(size * patterns.UPLOAD_CHUNK)} ({size:,} x 64 KiB)"
        if self.name == "fanin":
            return f"{FANIN_CONNECTIONS} conns x {size:,} round trips"
        return f"{size:,} {self.unit}"

    def payload_bytes(self, size: int) -> int:
        """Bytes that cross the connection, one way (for throughput figures)."""
        if self.unit == "bytes":
            return size
        if self.unit == "chunks":
            return size * patterns.UPLOAD_CHUNK
        if self.name == "fanin":
            return size * FANIN_CONNECTIONS * patterns.MESSAGE_SIZE
        if self.name == "pingpong":
            return size * patterns.MESSAGE_SIZE
        return size * patterns.ITEM_SIZE


def _human_bytes(size: int) -> str:
    if size >= 1 << 30:
        return f"{size / (1 << 30):.2f} GiB"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    return f"{size / 1024:.1f} KiB"


WORKLOADS: Final = (
    Workload(
        "lines",
        "64-byte lines, readline() until EOF",
        2_000_000,
        "lines",
    ),
    Workload(
        "frames",
        "length-prefixed frames (4-byte big-endian length + 60 bytes), "
        "readexactly(4) + readexactly(n) until EOF",
        1_000_000,
        "frames",
    ),
    Workload(
        "bulk",
        "bulk download, read(65536) until EOF",
        2 * 1024**3,
        "bytes",
        minimum=1,
    ),
    Workload(
        "pingpong",
        "sequential round trips of a 16-byte line: write + drain + readline",
        50_000,
        "round trips",
        latency=True,
    ),
    Workload(
        "fanin",
        f"{FANIN_CONNECTIONS} concurrent connections, each doing sequential "
        "16-byte round trips",
        500,
        "round trips per connection",
        latency=True,
    ),
    Workload(
        "upload",
        "bulk upload: write(64 KiB) + drain(), then write_eof() and wait for "
        "the peer's byte count and checksum",
        2 * 1024**3 // patterns.UPLOAD_CHUNK,
        "chunks",
    ),
)


def workload_names() -> list[str]:
    return [workload.name for workload in WORKLOADS]


def get(name: str) -> Workload:
    for workload in WORKLOADS:
        if workload.name == name:
            return workload
    raise KeyError(name)
