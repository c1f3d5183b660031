"""The workloads: what a client does against which peer, what load a server gets, at which size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from . import patterns

__all__ = [
    "FANIN_CONNECTIONS",
    "SERVER_WORKLOADS",
    "WORKLOADS",
    "ServerWorkload",
    "Workload",
    "server_workload_names",
    "workload_names",
]

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


# -- server workloads ----------------------------------------------------------

#: redis-benchmark's concurrent connections (``-c``).
RESP_CONNECTIONS: Final = 50
#: wrk's concurrent connections (``-c``).
HTTP_CONNECTIONS: Final = 100
#: The redis-benchmark tests of the RESP workloads, in the order they run
#: (``set`` before ``get``, so that every GET finds the key).
RESP_TESTS: Final = ("ping_inline", "ping_mbulk", "set", "get")


@dataclass(frozen=True)
class ServerWorkload:
    """A server under a load generator. ``full_size`` counts ``unit`` at ``--scale 1``."""

    name: str
    description: str
    #: The handler the server runs: ``resp`` or ``http`` (see benchmarks.protocols).
    protocol: str
    #: The load generator (see benchmarks.loadgen).
    tool: str
    #: The load generator's tests, run one after the other against one server.
    tests: tuple[str, ...]
    full_size: int
    #: ``requests`` (per test) or ``seconds`` (per test).
    unit: str
    connections: int
    pipeline: int = 1
    minimum: int = 1

    def size(self, scale: float) -> int:
        """The size at ``scale``: requests per test, or seconds per test."""
        return max(self.minimum, round(self.full_size * scale))

    def describe_size(self, size: int) -> str:
        per = "test" if len(self.tests) > 1 else "run"
        if self.unit == "seconds":
            return f"{size} s per {per}, {self.connections} connections"
        return f"{size:,} requests per {per}, {self.connections} connections"


SERVER_WORKLOADS: Final = (
    ServerWorkload(
        "resp-p1",
        "RESP server (readline + readexactly per command, write + drain per "
        "reply) under redis-benchmark, no pipelining",
        "resp",
        "redis-benchmark",
        RESP_TESTS,
        100_000,
        "requests",
        RESP_CONNECTIONS,
        pipeline=1,
        minimum=500,
    ),
    ServerWorkload(
        "resp-p16",
        "the same RESP server under redis-benchmark, 16 pipelined requests per "
        "connection",
        "resp",
        "redis-benchmark",
        RESP_TESTS,
        500_000,
        "requests",
        RESP_CONNECTIONS,
        pipeline=16,
        minimum=2_000,
    ),
    ServerWorkload(
        "http",
        "HTTP/1.1 keep-alive server (readuntil(b'\\r\\n\\r\\n') + Content-Length, "
        "write + drain per response) under wrk",
        "http",
        "wrk",
        ("get",),
        8,
        "seconds",
        HTTP_CONNECTIONS,
    ),
)


def server_workload_names() -> list[str]:
    return [workload.name for workload in SERVER_WORKLOADS]


def get_server(name: str) -> ServerWorkload:
    for workload in SERVER_WORKLOADS:
        if workload.name == name:
            return workload
    raise KeyError(name)
