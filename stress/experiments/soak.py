"""soak: a seeded, reproducible random mix of everything against one server."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any, Final

from ..profiles import MiB, Profile
from ..results import Row, Target
from .common import Certificates, ServerLife, escaped_bugs, library_warnings
from .exhaustion import QUEUED_IDS, Burst, exhaust_fds_once
from .faults import faults_injected

#: (weight, scenario, parameters from the session's random generator).
CATALOG: Final[list[tuple[int, str, Any]]] = [
    (20, "echo", lambda rng: {"lines": rng.randint(1, 20)}),
    (5, "echo", lambda rng: {"lines": rng.randint(2, 20), "half_close": True}),
    (5, "half_close_upload", lambda rng: {}),
    (5, "truncated_frame", lambda rng: {}),
    (4, "vanish_mid_frame", lambda rng: {}),
    (3, "vanish_mid_frame", lambda rng: {"reset": True}),
    (4, "reset_during_read", lambda rng: {}),
    (3, "reset_during_drain", lambda rng: {}),
    (3, "reset_during_write", lambda rng: {}),
    (4, "raise_handler", lambda rng: {}),
    (2, "memory_error", lambda rng: {}),
    (4, "timeout_handler", lambda rng: {}),
    (3, "cancelled_drain", lambda rng: {}),
    (3, "oversized_frame", lambda rng: {}),
    (6, "garbage_frames", lambda rng: {}),
    (2, "unknown_mode", lambda rng: {}),
    (6, "slow_line", lambda rng: {"seconds": rng.uniform(0.2, 1.5), "interval": 0.05}),
    (2, "no_separator", lambda rng: {"size": rng.randint(1, 8) * MiB}),
    (4, "tls_echo", lambda rng: {"lines": rng.randint(1, 5)}),
    (1, "tls_stall", lambda rng: {"slack": 5.0}),
]


def plan(profile: Profile) -> tuple[list[list[Any]], list[float]]:
    """The sessions (with their start offsets) and the fd-exhaustion burst times.

    A pure function of the profile (its seed, duration and rates): the same
    seed gives the same plan.
    """
    rng = random.Random(profile.seed)
    weights = [weight for weight, _, _ in CATALOG]
    count = int(profile.soak_seconds * profile.soak_sessions_per_second)
    sessions: list[list[Any]] = []
    for cid in range(count):
        _, name, make = rng.choices(CATALOG, weights)[0]
        params = {**make(rng), "at": rng.uniform(0, profile.soak_seconds * 0.9)}
        sessions.append([name, cid, rng.randrange(2**32), params])
    sessions.sort(key=lambda session: session[3]["at"])
    bursts = sorted(
        rng.uniform(0.1, 0.8) * profile.soak_seconds for _ in range(profile.soak_bursts)
    )
    return sessions, bursts


#: Accept-failure log records per fd burst that the soak accepts (see below).
MAX_RECORDS_PER_BURST = 10


def run_soak(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """Everything at once for ``soak_seconds``, with fd-exhaustion bursts.

    Ends with a report: connections served, bytes verified, faults injected,
    fds/tasks leaked, log lines by level; and the same checks as the single
    experiments: every session as promised, every byte delivered, one log
    record per handler failure and per burst, still serving, nothing leaked.
    """
    row = Row("soak", target)
    if certificates is None:
        raise ValueError("the soak needs certificates (it mixes TLS clients in)")
    sessions, burst_times = plan(profile)
    burst_seconds = min(profile.burst_seconds, 0.5)
    timeout = profile.handshake_timeout
    with ServerLife(row, profile, certificates, handshake_timeout=timeout) as life:
        bursts: list[Burst] = []
        with life.load_generator(
            sessions, concurrency=profile.soak_concurrency, step_timeout=10.0
        ) as load:
            started = time.monotonic()
            for index, at in enumerate(burst_times):
                time.sleep(max(started + at - time.monotonic(), 0))
                bursts.append(
                    exhaust_fds_once(
                        life, burst_seconds, QUEUED_IDS + 1000 * index, from_idle=False
                    )
                )
            outcomes: list[dict[str, Any]] = load.result(profile.soak_seconds + 300)[
                "outcomes"
            ]
        final = life.settle_idle()
        life.check_outcomes(outcomes)
        life.check_delivery(outcomes)
        for index, burst in enumerate(bursts, 1):
            row.check(
                not burst.errors and burst.recovery is not None,
                f"burst {index}: queued clients not served after it: {burst.errors}",
            )
        row.figures["seed"] = profile.seed
        row.figures["seconds"] = profile.soak_seconds
        row.figures["connections_served"] = final["stats"]["started"]
        row.figures["faults_injected"] = (
            faults_injected(outcomes)
            + len(bursts)
            + sum(
                1
                for o in outcomes
                if o["scenario"]
                in (
                    "garbage_frames",
                    "oversized_frame",
                    "unknown_mode",
                    "no_separator",
                    "slow_line",
                    "tls_stall",
                )
            )
        )
        row.figures["fd_bursts"] = len(bursts)
        row.figures["scenarios"] = dict(Counter(o["scenario"] for o in outcomes))
        # One record per handler bug, plus the accept failures. A burst in the
        # middle of the random mix is broken into several runs of failures
        # whenever a finishing session frees a descriptor and an accept gets
        # through; the server logs once per run, on each of its two listeners
        # (plain and TLS). So: at least one record per burst, and a few per
        # burst at most -- never one per failed accept (asyncio's own server
        # logs thousands here).
        bugs = escaped_bugs(final)
        records = library_warnings(final)
        accept_records: int | None = records - bugs
        if target.is_control:  # (another logger: reported as log lines only)
            accept_records = None
        row.figures["accept_failure_records"] = accept_records
        row.check(
            accept_records is None
            or len(bursts) <= accept_records <= MAX_RECORDS_PER_BURST * len(bursts),
            f"{records} portastreams log records at WARNING or above: {bugs} handler "
            f"bugs and {accept_records} for {len(bursts)} fd bursts (expected 1 to "
            f"{MAX_RECORDS_PER_BURST} per burst)",
        )
        life.check_logs(final, expected=records, what="as counted above")
        life.check_serving()
        life.finish()
    return row
