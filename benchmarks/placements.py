"""Where the two processes of a measurement run: which CPU each may use.

Every measurement has two processes that talk over loopback: the client and
its peer, or the server and its load generator. How the scheduler places
them changes the figures -- two processes on one CPU hand over without a
cross-core wake-up but share the CPU; on two CPUs each has a core of its own
but every message is a cross-core wake-up -- and can change which contender
looks faster. So the suite measures each placement and reports them side by
side; a result that holds in only one placement is not a result.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "PLACEMENTS",
    "CpuPair",
    "Placement",
    "default_cpus",
    "get",
    "pinned_command",
    "placement_names",
    "resolve",
]

#: ``(peer or server CPU, client or load-generator CPU)``; ``None``: not pinned.
CpuPair = tuple[int | None, int | None]


@dataclass(frozen=True)
class Placement:
    """How to pin the two processes of a measurement."""

    name: str
    description: str

    def cpus(self, pair: tuple[int, int] | None) -> CpuPair | None:
        """The CPUs of ``(peer/server, client/load generator)``.

        ``pair`` is the two CPUs the suite may use (see :func:`default_cpus`),
        ``None`` where the platform cannot pin. Returns ``None`` when this
        placement is impossible here (pinning without a pair, or two distinct
        CPUs on a one-CPU machine).
        """
        if self.name == "unpinned":
            return (None, None)
        if pair is None:
            return None
        first, second = pair
        if self.name == "shared":
            return (second, second)
        if first == second:
            return None
        return (first, second)


PLACEMENTS: Final = (
    Placement(
        "shared",
        "both processes pinned to the same CPU: hand-overs without cross-core "
        "wake-ups, but the two share one CPU",
    ),
    Placement(
        "split",
        "the peer (or server) pinned to one CPU, the client (or load generator) "
        "to another: a core each, a cross-core wake-up per message",
    ),
    Placement(
        "unpinned",
        "nothing pinned: the scheduler places and moves both processes",
    ),
)


def get(name: str) -> Placement:
    for placement in PLACEMENTS:
        if placement.name == name:
            return placement
    raise KeyError(name)


def placement_names() -> list[str]:
    return [placement.name for placement in PLACEMENTS]


def default_cpus() -> tuple[int, int] | None:
    """The lowest and the highest CPU this process may use; None if it cannot pin."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[-1])


def resolve(
    chosen: Sequence[Placement], pair: tuple[int, int] | None
) -> list[tuple[Placement, CpuPair]]:
    """The placements of ``chosen`` possible here, each with its CPUs."""
    result = []
    for placement in chosen:
        cpus = placement.cpus(pair)
        if cpus is not None:
            result.append((placement, cpus))
    return result


def pinned_command(cpu: int | None, command: Sequence[str]) -> list[str]:
    """``command``, run pinned to ``cpu`` (through :mod:`.pinned`) unless ``cpu`` is None."""
    if cpu is None:
        return list(command)
    return [sys.executable, "-m", "benchmarks.pinned", str(cpu), *command]
