"""load: N connections held at once, then verified round trips on all of them."""

from __future__ import annotations

from typing import Any

from ..processes import LoadGenerator
from ..profiles import Profile
from ..results import Row, Target
from .common import Certificates, ServerLife

#: The longest any phase of the load experiment may take.
PHASE_TIMEOUT = 600.0


def run_load(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """Hold ``load_connections`` at once; ``round_trips`` echoes on each, every byte checked.

    Figures: connections held (handlers running at once), accepts/s (handler
    starts over the server's accept window), round trips/s (all connections
    at once), RSS idle/peak and per held connection, server CPU per round trip.
    """
    row = Row("load", target)
    count = profile.load_connections
    processes = max(1, profile.load_processes)
    with ServerLife(row, profile) as life:
        idle = life.idle
        shares = [
            count // processes + (i < count % processes) for i in range(processes)
        ]
        loads: list[LoadGenerator] = []
        try:
            first = 0
            for index, share in enumerate(shares):
                loads.append(
                    LoadGenerator(
                        {
                            "job": "hold",
                            "port": life.port,
                            "connections": share,
                            "first_cid": first,
                            "round_trips": profile.round_trips,
                            "seed": profile.seed + index,
                        },
                        f"load generator {index}",
                    )
                )
                first += share
            connected = sum(
                load.expect("held", PHASE_TIMEOUT)["connected"] for load in loads
            )
            held = life.settle(
                lambda s: s["stats"]["live"] >= connected, seconds=PHASE_TIMEOUT
            )
            before = life.status()
            for load in loads:
                load.command("go")
            seconds = max(
                load.expect("round_trips", PHASE_TIMEOUT)["seconds"] for load in loads
            )
            after = life.status()
            for load in loads:
                load.command("close")
            results = [load.result(PHASE_TIMEOUT) for load in loads]
        finally:
            for load in loads:
                load.kill()
        final = life.settle_idle()

        stats = held["stats"]
        live = stats["live"]
        window = (stats["last_start"] or 0) - (stats["first_start"] or 0)
        round_trips = sum(result["round_trips"] for result in results)
        verified = sum(result["verified"] for result in results)
        failures = sum(result["failure_count"] for result in results)
        ledger = life.ledger()
        written = sum(entry[1] for key, entry in ledger.items() if int(key) < count)
        figures: dict[str, Any] = row.figures
        figures["connections_held"] = live
        figures["accepts_per_s"] = (live - 1) / window if window > 0 else None
        figures["round_trips_per_s"] = round_trips / seconds if seconds else None
        figures["rss_idle"] = idle["rss"]
        figures["rss_peak"] = after["rss_peak"]
        figures["rss_per_connection"] = (held["rss"] - idle["rss"]) / max(live, 1)
        figures["cpu_us_per_round_trip"] = (
            (after["cpu"] - before["cpu"]) / round_trips * 1e6 if round_trips else None
        )
        figures["bytes_verified"] = verified
        figures["bytes_lost"] = max(written - verified, 0)

        row.check(connected == count, f"only {connected} of {count} connections opened")
        row.check(live == count, f"only {live} of {count} connections held at once")
        for result in results:
            row.check(
                result["failure_count"] == 0,
                f"{result['failure_count']} round trips failed: {result['failures'][:3]}",
            )
        row.check(
            failures == 0 and written == verified,
            (f"the server wrote {written} bytes, the clients verified {verified}"),
        )
        life.check_logs(final)
        life.check_serving()
        life.finish()
    return row
