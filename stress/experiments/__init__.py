"""The experiments, by name, with the columns of their tables."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..profiles import Profile
from ..results import (
    Column,
    Row,
    Target,
    decimal,
    integer,
    kibibytes,
    levels,
    mebibytes,
    precise,
)
from .common import Certificates
from .exhaustion import run_fd_exhaustion, run_memory_errors
from .faults import run_client_faults, run_shutdown
from .hostile import run_garbage_frames, run_no_separator, run_slowloris, run_tls_stall
from .load import run_load
from .soak import run_soak

Runner = Callable[[Target, Profile, Certificates | None], Row]


@dataclass(frozen=True)
class Experiment:
    name: str
    #: load, exhaustion, faults, hostile or soak.
    group: str
    title: str
    run: Runner
    columns: tuple[Column, ...]
    needs_tls: bool = False


def _shutdown(method: str) -> Runner:
    def run(target: Target, profile: Profile, certificates: Certificates | None) -> Row:
        return run_shutdown(method, target, profile)

    return functools.update_wrapper(run, run_shutdown)


LEAKS: Final = (
    Column("fds_leaked", "fds leaked", integer),
    Column("tasks_leaked", "tasks leaked", integer),
)
LOGS: Final = (Column("logs", "log lines by level", levels),)
DELIVERY: Final = (
    Column("bytes_verified", "bytes verified", integer),
    Column("bytes_lost", "bytes lost", integer),
)

EXPERIMENTS: Final[dict[str, Experiment]] = {
    experiment.name: experiment
    for experiment in [
        Experiment(
            "load",
            "load",
            "connections held at once, 10 verified round trips each",
            run_load,
            (
                Column("connections_held", "held", integer),
                Column("accepts_per_s", "accepts/s", integer, vs_control=True),
                Column("round_trips_per_s", "round trips/s", integer, vs_control=True),
                Column("rss_peak", "peak RSS MiB", mebibytes),
                Column(
                    "rss_per_connection", "RSS/conn KiB", kibibytes, vs_control=True
                ),
                Column(
                    "cpu_us_per_round_trip",
                    "CPU µs/round trip",
                    decimal,
                    vs_control=True,
                ),
                *DELIVERY,
                *LEAKS,
            ),
        ),
        Experiment(
            "fd_exhaustion",
            "exhaustion",
            "RLIMIT_NOFILE lowered: accept() fails with EMFILE, then fds are freed",
            run_fd_exhaustion,
            (
                Column("bursts", "bursts", integer),
                Column("accept_error_logs", "log records per burst"),
                Column("recovery_s", "recovery s", precise),
                Column("still_serving", "still serving"),
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "memory_error",
            "exhaustion",
            "handlers that cannot allocate their state (MemoryError)",
            run_memory_errors,
            (
                Column("memory_errors", "MemoryErrors", integer),
                Column("sessions_ok", "sessions ok", integer),
                Column("sessions", "of", integer),
                Column("bytes_lost", "bytes lost", integer),
                Column("still_serving", "still serving"),
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "client_faults",
            "faults",
            "resets, half-closes, vanishing peers, raising and cancelled handlers",
            run_client_faults,
            (
                Column("faults_injected", "faults injected", integer),
                Column("sessions_ok", "sessions ok", integer),
                Column("sessions", "of", integer),
                *DELIVERY,
                Column("handler_errors", "handler errors", integer),
                Column("still_serving", "still serving"),
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "close",
            "faults",
            "close() under full traffic",
            _shutdown("close"),
            (
                Column("connections", "connections", integer),
                Column("new_clients", "new clients"),
                Column("wait_closed_s", "wait_closed s", precise),
                *DELIVERY,
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "close_clients",
            "faults",
            "close() + close_clients() under full traffic",
            _shutdown("close_clients"),
            (
                Column("connections", "connections", integer),
                Column("all_served_s", "all served after s", precise),
                Column("ended_eof", "EOF", integer),
                Column("ended_reset", "reset", integer),
                Column("ended_otherwise", "other", integer),
                *DELIVERY,
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "abort_clients",
            "faults",
            "close() + abort_clients() under full traffic",
            _shutdown("abort_clients"),
            (
                Column("connections", "connections", integer),
                Column("all_served_s", "all served after s", precise),
                Column("ended_eof", "EOF", integer),
                Column("ended_reset", "reset", integer),
                Column("ended_otherwise", "other", integer),
                Column("bytes_verified", "bytes verified", integer),
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "no_separator",
            "hostile",
            "a huge line without a separator to a readline() handler",
            run_no_separator,
            (
                Column("bytes_sent", "MiB sent", mebibytes),
                Column("mb_per_s", "MB/s", decimal, vs_control=True),
                Column("rss_growth", "peak RSS growth MiB", mebibytes),
                Column("overlong_lines", "over-long reads", integer),
                *DELIVERY,
                *LEAKS,
            ),
        ),
        Experiment(
            "slowloris",
            "hostile",
            "slowloris clients while a normal client's latency is measured",
            run_slowloris,
            (
                Column("slow_clients_held", "slow clients", integer),
                Column("p50_quiet_ms", "p50 quiet ms", precise),
                Column("p99_quiet_ms", "p99 quiet ms", precise),
                Column("p50_ms", "p50 ms", precise, vs_control=True),
                Column("p99_ms", "p99 ms", precise, vs_control=True),
                Column("max_ms", "max ms", precise),
                Column("samples", "samples", integer),
                *LEAKS,
            ),
        ),
        Experiment(
            "tls_stall",
            "hostile",
            "TLS clients that never finish the handshake",
            run_tls_stall,
            (
                Column("stalled_clients", "stalled clients", integer),
                Column("handshake_timeout_s", "handshake timeout s", precise),
                Column("closed_after_s", "closed after s (max)", precise),
                Column("sessions_ok", "sessions ok", integer),
                Column("sessions", "of", integer),
                *LEAKS,
                *LOGS,
            ),
            needs_tls=True,
        ),
        Experiment(
            "garbage_frames",
            "hostile",
            "garbage, oversized and truncated frames, unknown modes",
            run_garbage_frames,
            (
                Column("sessions_ok", "sessions ok", integer),
                Column("sessions", "of", integer),
                Column("oversized_rejected", "oversized rejected", integer),
                Column("truncated", "truncated", integer),
                *DELIVERY,
                *LEAKS,
                *LOGS,
            ),
        ),
        Experiment(
            "soak",
            "soak",
            "a seeded random mix of everything, with fd-exhaustion bursts",
            run_soak,
            (
                Column("seed", "seed"),
                Column("seconds", "s", decimal),
                Column("connections_served", "connections served", integer),
                Column("sessions_ok", "sessions ok", integer),
                Column("sessions", "of", integer),
                Column("faults_injected", "faults injected", integer),
                Column("fd_bursts", "fd bursts", integer),
                Column("accept_failure_records", "accept-failure logs", integer),
                *DELIVERY,
                *LEAKS,
                *LOGS,
            ),
            needs_tls=True,
        ),
    ]
}
