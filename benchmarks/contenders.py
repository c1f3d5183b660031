"""The contenders: a stream API on one backend, and which are the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["BACKENDS", "CONTENDERS", "NATIVE", "Contender", "get"]

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


def get(name: str) -> Contender:
    for contender in CONTENDERS:
        if contender.name == name:
            return contender
    raise KeyError(name)


def contender_names() -> list[str]:
    return [contender.name for contender in CONTENDERS]
