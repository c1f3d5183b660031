"""The contenders: a stream API on one backend, and which are the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "BACKENDS",
    "CONTENDERS",
    "NATIVE",
    "SERVER_CONTENDERS",
    "SERVER_NATIVE",
    "Contender",
    "get",
    "get_server",
]

#: Backends in display order.
BACKENDS: Final = ("asyncio", "uvloop", "trio")


@dataclass(frozen=True)
class Contender:
    """A stream implementation (``library``) running on ``backend``."""

    library: str
    backend: str
    description: str

    @property
    def name(self) -> str:
        return f"{self.library}/{self.backend}"


CONTENDERS: Final = (
    Contender(
        "portastreams",
        "asyncio",
        "portastreams.open_connection under anyio.run(backend='asyncio')",
    ),
    Contender(
        "portastreams",
        "uvloop",
        "portastreams.open_connection under anyio.run(backend='asyncio', use_uvloop)",
    ),
    Contender(
        "portastreams",
        "trio",
        "portastreams.open_connection under anyio.run(backend='trio')",
    ),
    Contender(
        "asyncio-streams",
        "asyncio",
        "asyncio.open_connection under asyncio.run",
    ),
    Contender(
        "asyncio-streams",
        "uvloop",
        "asyncio.open_connection under uvloop.run",
    ),
    Contender(
        "anyio-buffered",
        "asyncio",
        "anyio BufferedByteStream over anyio.connect_tcp, anyio.run(backend='asyncio')",
    ),
    Contender(
        "anyio-buffered",
        "uvloop",
        "anyio BufferedByteStream over anyio.connect_tcp, anyio.run(use_uvloop)",
    ),
    Contender(
        "anyio-buffered",
        "trio",
        "anyio BufferedByteStream over anyio.connect_tcp, anyio.run(backend='trio')",
    ),
    Contender(
        "trio-buffer",
        "trio",
        "hand-written bytearray buffer over trio.open_tcp_stream, trio.run",
    ),
)

#: The baselines a backend's ratios are relative to: asyncio's own streams on
#: asyncio and uvloop; on trio, whichever of these two is faster (per workload).
NATIVE: Final[dict[str, tuple[str, ...]]] = {
    "asyncio": ("asyncio-streams/asyncio",),
    "uvloop": ("asyncio-streams/uvloop",),
    "trio": ("anyio-buffered/trio", "trio-buffer/trio"),
}


#: Server contenders: every one serves the same handlers (see
#: :mod:`benchmarks.protocols`); the streams-API ones the very same functions.
SERVER_CONTENDERS: Final = (
    Contender(
        "portastreams",
        "asyncio",
        "portastreams.start_server under anyio.run(backend='asyncio')",
    ),
    Contender(
        "portastreams",
        "uvloop",
        "portastreams.start_server under anyio.run(backend='asyncio', use_uvloop)",
    ),
    Contender(
        "portastreams",
        "trio",
        "portastreams.start_server under anyio.run(backend='trio')",
    ),
    Contender(
        "asyncio-streams",
        "asyncio",
        "asyncio.start_server under asyncio.run, the same handler",
    ),
    Contender(
        "asyncio-streams",
        "uvloop",
        "asyncio.start_server under uvloop.run, the same handler",
    ),
    Contender(
        "trio-buffer",
        "trio",
        "trio.serve_tcp with a hand-written bytearray buffer, trio.run",
    ),
)

#: The server baselines: asyncio's own server on asyncio and uvloop, the
#: hand-written trio server on trio.
SERVER_NATIVE: Final[dict[str, tuple[str, ...]]] = {
    "asyncio": ("asyncio-streams/asyncio",),
    "uvloop": ("asyncio-streams/uvloop",),
    "trio": ("trio-buffer/trio",),
}


def get(name: str) -> Contender:
    for contender in CONTENDERS:
        if contender.name == name:
            return contender
    raise KeyError(name)


def get_server(name: str) -> Contender:
    for contender in SERVER_CONTENDERS:
        if contender.name == name:
            return contender
    raise KeyError(name)


def contender_names() -> list[str]:
    return [contender.name for contender in CONTENDERS]


def server_contender_names() -> list[str]:
    return [contender.name for contender in SERVER_CONTENDERS]
