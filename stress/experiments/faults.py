"""Faults: clients that reset, half-close and vanish; handlers that raise or are
cancelled; and the server's own ``close()``, ``close_clients()`` and
``abort_clients()`` under full traffic."""

from __future__ import annotations

import random
import socket
import time
from collections import Counter
from typing import Any, Final

from ..profiles import Profile
from ..results import Row, Target
from .common import HOST, Certificates, ServerLife

#: Every per-connection fault, with its parameters.
CLIENT_FAULTS: Final[list[tuple[str, dict[str, Any]]]] = [
    ("reset_during_read", {}),
    ("reset_during_drain", {}),
    ("reset_during_write", {}),
    ("half_close_upload", {}),
    ("echo", {"half_close": True, "lines": 6}),
    ("truncated_frame", {}),
    ("vanish_mid_frame", {}),
    ("vanish_mid_frame", {"reset": True}),
    ("raise_handler", {}),
    ("timeout_handler", {}),
    ("cancelled_drain", {}),
]

#: Scenarios whose *handler* fails or is cancelled on purpose.
HANDLER_FAULTS: Final = frozenset(
    {"raise_handler", "memory_error", "timeout_handler", "cancelled_drain"}
)


def faults_injected(outcomes: list[dict[str, Any]]) -> int:
    return sum(1 for o in outcomes if o["fault"] or o["scenario"] in HANDLER_FAULTS)


def run_client_faults(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """Every client-side fault and failing/cancelled handler, mixed, many times.

    Resets during the server's read, during ``drain()`` of a large write and
    during writes without ``drain()``; half-closes; truncated frames; peers
    vanishing mid-frame (FIN or RST); handlers raising; handlers whose
    deadline cancels a read or a drain. Every promised byte must arrive; each
    handler failure is logged once; the server keeps serving; nothing leaks.
    """
    row = Row("client_faults", target)
    rng = random.Random(profile.seed)
    sessions: list[list[Any]] = []
    for name, params in CLIENT_FAULTS:
        for _ in range(profile.fault_sessions):
            sessions.append([name, len(sessions), rng.randrange(2**32), params])
    rng.shuffle(sessions)
    with ServerLife(row, profile) as life:
        outcomes = life.run_sessions(sessions, concurrency=16)
        final = life.settle_idle()
        life.check_outcomes(outcomes)
        life.check_delivery(outcomes)
        row.figures["faults_injected"] = faults_injected(outcomes)
        life.check_logs(final)
        life.check_serving()
        life.finish()
    return row


#: The server methods a shutdown experiment calls (after ``close()``).
SHUTDOWNS: Final = ("close", "close_clients", "abort_clients")
#: How long all traffic connections may take to be accepted and served (a
#: liveness bound, not a speed target: the time is reported as a figure).
ALL_SERVED_SECONDS: Final = 60.0


def run_shutdown(method: str, target: Target, profile: Profile) -> Row:
    """``close()`` (then ``close_clients()`` or ``abort_clients()``) under full traffic.

    ``close``: running sessions finish undisturbed, new clients are refused,
    ``wait_closed()`` returns when the last handler is done.
    ``close_clients``: graceful: every client gets every byte written, then
    EOF, never a reset.
    ``abort_clients``: every connection ends at once (EOF or reset), no byte
    arrives corrupted.
    For all three, the server's own shutdown is not logged as handler failures.
    """
    experiment = "close" if method == "close" else f"{method}"
    row = Row(experiment, target)
    count = profile.traffic_connections
    rng = random.Random(profile.seed)
    sessions: list[list[Any]] = []
    for index in range(count):
        if method == "close":
            params: dict[str, Any] = {"max": 40, "pause": 0.01}
            sessions.append(["echo_until_closed", index, rng.randrange(2**32), params])
        elif index % 4 == 3:
            sessions.append(["download_until_closed", index, rng.randrange(2**32), {}])
        else:
            # Half of them pipeline two requests: a server that closes has
            # one unread nearly always, and must still not reset them.
            params = {"pause": 0.002 * (index % 3), "pipeline": 1 + index % 2}
            sessions.append(["echo_until_closed", index, rng.randrange(2**32), params])
    with ServerLife(row, profile) as life:
        if not life.server.call("supports", method=method)["supports"]:
            # asyncio's Server has it from Python 3.13; uvloop's does not.
            row.not_applicable = f"this server has no {method}()"
            return row
        with life.load_generator(
            sessions, concurrency=count, step_timeout=ALL_SERVED_SECONDS, announce=count
        ) as load:
            load.expect("running")
            started = time.monotonic()
            running = life.settle(
                lambda s: s["stats"]["live"] >= count, seconds=ALL_SERVED_SECONDS
            )
            row.figures["all_served_s"] = time.monotonic() - started
            row.check(
                running["stats"]["live"] >= count,
                f"only {running['stats']['live']} of {count} connections were served "
                f"within {ALL_SERVED_SECONDS} s",
            )
            life.server.call("close")
            if method == "close":
                row.figures["new_clients"] = _new_client_refused(life.port)
                row.check(
                    row.figures["new_clients"] == "refused",
                    f"a new client after close() was {row.figures['new_clients']}",
                )
            else:
                life.server.call(method)
            closed = life.server.call("wait_closed", timeout=20.0, reply_timeout=40.0)
            outcomes: list[dict[str, Any]] = load.result(60.0)["outcomes"]
        row.figures["wait_closed_s"] = closed["seconds"]
        row.check(not closed["timed_out"], "wait_closed() did not return within 20 s")
        ends = Counter(o["end"] for o in outcomes)
        row.figures["connections"] = len(outcomes)
        row.figures["ended_eof"] = ends.get("eof", 0)
        row.figures["ended_reset"] = ends.get("reset", 0)
        row.figures["ended_otherwise"] = len(outcomes) - ends["eof"] - ends["reset"]
        final = life.status()
        life.check_outcomes(outcomes)
        if method == "close":
            row.check(
                ends == Counter({"closed": count}),
                f"sessions did not finish undisturbed after close(): {dict(ends)}",
            )
            life.check_delivery(outcomes)
        elif method == "close_clients":
            row.check(
                ends == Counter({"eof": count}),
                f"after close_clients() {ends.get('reset', 0)} of {count} clients "
                f"were reset and {row.figures['ended_otherwise']} ended otherwise, "
                f"instead of a clean EOF for all: {dict(ends)}",
            )
            life.check_delivery(outcomes)
        else:
            row.check(
                ends["eof"] + ends["reset"] == count,
                f"after abort_clients() not every connection ended: {dict(ends)}",
            )
            _check_no_excess(life, outcomes)
        life.check_logs(final, expected=0, what="the server's own shutdown")
        life.finish()
    return row


def _new_client_refused(port: int) -> str:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return "accepted"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return repr(exc)


def _check_no_excess(life: ServerLife, outcomes: list[dict[str, Any]]) -> None:
    """After an abort, nobody received more than the server wrote."""
    ledger = life.ledger()
    excess = [
        o
        for o in outcomes
        if str(o["cid"]) in ledger and o["received"] > ledger[str(o["cid"])][1]
    ]
    life.row.figures["bytes_verified"] = sum(o["verified"] for o in outcomes)
    life.row.check(not excess, f"{len(excess)} clients received more than was written")
