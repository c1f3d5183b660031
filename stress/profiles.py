"""How big each experiment is: the ``short`` profile (run by the test suite on
every backend) and the ``long`` one (on demand: ``nox -s stress -- --profile long``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

MiB: Final = 1024 * 1024


@dataclass(frozen=True)
class Profile:
    name: str
    #: load: connections held at once, spread over ``load_processes`` clients.
    load_connections: int
    load_processes: int
    round_trips: int
    #: resource exhaustion: fd-exhaustion bursts and how long each lasts.
    exhaustion_bursts: int
    burst_seconds: float
    #: handlers that raise MemoryError.
    memory_errors: int
    #: faults: sessions per fault kind.
    fault_sessions: int
    #: close()/close_clients()/abort_clients() under traffic: connections.
    traffic_connections: int
    #: hostile input.
    no_separator_bytes: int
    slowloris_connections: int
    latency_seconds: float
    tls_stalls: int
    handshake_timeout: float
    garbage_sessions: int
    #: soak.
    soak_seconds: float
    soak_concurrency: int
    soak_sessions_per_second: float
    soak_bursts: int
    seed: int = 0

    def with_seed(self, seed: int) -> Profile:
        return replace(self, seed=seed)


SHORT: Final = Profile(
    name="short",
    load_connections=300,
    load_processes=1,
    round_trips=10,
    exhaustion_bursts=2,
    burst_seconds=0.6,
    memory_errors=20,
    fault_sessions=6,
    traffic_connections=60,
    no_separator_bytes=64 * MiB,
    slowloris_connections=200,
    latency_seconds=1.5,
    tls_stalls=10,
    handshake_timeout=1.0,
    garbage_sessions=40,
    soak_seconds=4.0,
    soak_concurrency=24,
    soak_sessions_per_second=40.0,
    soak_bursts=1,
)

LONG: Final = Profile(
    name="long",
    load_connections=10_000,
    load_processes=2,
    round_trips=10,
    exhaustion_bursts=5,
    burst_seconds=1.0,
    memory_errors=500,
    fault_sessions=100,
    traffic_connections=500,
    no_separator_bytes=1024 * MiB,
    slowloris_connections=1000,
    latency_seconds=10.0,
    tls_stalls=200,
    handshake_timeout=2.0,
    garbage_sessions=2000,
    soak_seconds=60.0,
    soak_concurrency=100,
    soak_sessions_per_second=100.0,
    soak_bursts=6,
)

PROFILES: Final = {profile.name: profile for profile in (SHORT, LONG)}
