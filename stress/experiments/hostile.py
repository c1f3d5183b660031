"""Hostile input: no separator, slowloris, stalled TLS handshakes, garbage frames."""

from __future__ import annotations

import random
from typing import Any, Final

from ..processes import LoadGenerator
from ..profiles import MiB, Profile
from ..results import Row, Target
from .common import Certificates, ServerLife, probe_echo

#: How much the server's peak RSS may grow while reading a huge line.
MEMORY_BOUND: Final = 32 * MiB


def run_no_separator(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """``no_separator_bytes`` without a newline to a readline() handler.

    The server skips the over-long line in ``limit``-sized steps: its peak RSS
    stays within :data:`MEMORY_BOUND` of idle, other clients are served
    meanwhile, and the line after it is answered.
    """
    row = Row("no_separator", target)
    size = profile.no_separator_bytes
    with ServerLife(row, profile) as life:
        idle_rss = life.idle["rss"]
        sessions: list[list[Any]] = [["no_separator", 0, profile.seed, {"size": size}]]
        sessions += [["echo", 1 + i, profile.seed + i, {"lines": 20}] for i in range(4)]
        outcomes = life.run_sessions(
            sessions, concurrency=5, step_timeout=120.0, timeout=1800.0
        )
        final = life.settle_idle()
        life.check_outcomes(outcomes)
        life.check_delivery(outcomes)
        growth = final["rss_peak"] - idle_rss
        big = outcomes[0]
        row.figures["bytes_sent"] = big["sent"]
        row.figures["mb_per_s"] = (
            big["sent"] / big["seconds"] / 1e6 if big["seconds"] else None
        )
        row.figures["rss_growth"] = growth
        row.figures["overlong_lines"] = final["stats"]["overlong_lines"]
        row.check(
            growth <= MEMORY_BOUND,
            f"peak RSS grew by {growth / MiB:.1f} MiB (bound {MEMORY_BOUND / MiB:.0f} MiB)",
        )
        row.check(final["stats"]["overlong_lines"] > 0, "no over-long line was seen")
        life.check_logs(final)
        life.check_serving()
        life.finish()
    return row


def _latency(port: int, seconds: float, cid: int) -> dict[str, Any]:
    with LoadGenerator(
        {"job": "latency", "port": port, "seconds": seconds, "cid": cid},
        "latency client",
    ) as load:
        return load.result(seconds + 120)


def run_slowloris(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """``slowloris_connections`` clients dripping a byte every 100 ms, never a newline.

    A normal client's round-trip latency is measured before and during the
    flood (p50/p99; compare with the control's in the same run). The server
    must hold every slow client, answer each slow line once it is complete,
    and serve the normal client throughout.
    """
    row = Row("slowloris", target)
    count = profile.slowloris_connections
    with ServerLife(row, profile) as life:
        quiet = _latency(life.port, profile.latency_seconds / 2, 1 << 40)
        with LoadGenerator(
            {
                "job": "slowloris",
                "port": life.port,
                "connections": count,
                "interval": 0.1,
                "seed": profile.seed,
                "first_cid": 1 << 41,
            },
            "slowloris clients",
        ) as slow:
            held = slow.expect("held", 300)["connected"]
            during = life.settle(lambda s: s["stats"]["live"] >= held, seconds=60)
            loaded = _latency(life.port, profile.latency_seconds, (1 << 40) + 1)
            slow.command("stop")
            slow_result = slow.result(300)
        final = life.settle_idle()
        row.figures["slow_clients_held"] = during["stats"]["live"]
        row.figures["p50_quiet_ms"] = quiet["p50"]
        row.figures["p99_quiet_ms"] = quiet["p99"]
        row.figures["p50_ms"] = loaded["p50"]
        row.figures["p99_ms"] = loaded["p99"]
        row.figures["max_ms"] = loaded["max"]
        row.figures["samples"] = loaded["samples"]
        row.figures["slow_bytes"] = slow_result["dripped"]
        row.check(held == count, f"only {held} of {count} slow clients connected")
        row.check(
            during["stats"]["live"] >= count,
            f"only {during['stats']['live']} of {count} slow clients held at once",
        )
        for name, result in (
            ("quiet", quiet),
            ("loaded", loaded),
            ("slow", slow_result),
        ):
            row.check(
                result["failure_count"] == 0,
                f"{name} clients failed: {result['failures'][:3]}",
            )
        row.check(loaded["samples"] > 0, "no round trip under slowloris")
        life.check_logs(final)
        life.check_serving()
        life.finish()
    return row


def run_tls_stall(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """TLS clients that never finish the handshake, closed by ``ssl_handshake_timeout``.

    Half of them send nothing, half the start of a ClientHello. Meanwhile
    well-behaved TLS clients are served.
    """
    row = Row("tls_stall", target)
    if certificates is None:
        raise ValueError("the TLS experiment needs certificates")
    timeout = profile.handshake_timeout
    with ServerLife(row, profile, certificates, handshake_timeout=timeout) as life:
        count = profile.tls_stalls
        sessions: list[list[Any]] = [
            ["tls_stall", i, profile.seed + i, {"slack": 2.0}] for i in range(count)
        ]
        sessions += [
            ["tls_echo", count + i, profile.seed + i, {"lines": 3, "at": 0.1 * i}]
            for i in range(5)
        ]
        outcomes = life.run_sessions(
            sessions, concurrency=count + 5, step_timeout=timeout + 30
        )
        final = life.settle_idle()
        life.check_outcomes(outcomes)
        life.check_delivery(outcomes)
        stalls = [o for o in outcomes if o["scenario"] == "tls_stall"]
        row.figures["stalled_clients"] = len(stalls)
        row.figures["closed_after_s"] = max(o["seconds"] for o in stalls)
        row.figures["handshake_timeout_s"] = timeout
        life.check_logs(final)
        life.check_serving()
        try:
            probe_echo(life.ports["tls_port"], context=certificates.client_context())
        except (OSError, AssertionError) as exc:
            row.fail(f"the TLS server no longer serves: {exc!r}")
        life.finish()
    return row


def run_garbage_frames(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """Random bytes as frames, oversized frames, unknown modes, truncated frames.

    Each reply must be exactly what the frame handler answers to those bytes
    (simulated by :func:`stress.wire.expected_frame_replies`).
    """
    row = Row("garbage_frames", target)
    rng = random.Random(profile.seed)
    count = profile.garbage_sessions
    sessions: list[list[Any]] = []
    for name, share in (
        ("garbage_frames", count),
        ("oversized_frame", count // 4),
        ("unknown_mode", count // 4),
        ("truncated_frame", count // 4),
    ):
        for _ in range(share):
            sessions.append([name, len(sessions), rng.randrange(2**32), {}])
    rng.shuffle(sessions)
    with ServerLife(row, profile) as life:
        outcomes = life.run_sessions(sessions, concurrency=16)
        final = life.settle_idle()
        life.check_outcomes(outcomes)
        life.check_delivery(outcomes)
        row.figures["oversized_rejected"] = final["stats"]["oversized_frames"]
        row.figures["truncated"] = final["stats"]["truncated_frames"]
        life.check_logs(final)
        life.check_serving()
        life.finish()
    return row
