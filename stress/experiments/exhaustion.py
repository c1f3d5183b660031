"""Resource exhaustion: out of file descriptors while accepting; handlers out of memory."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from typing import Final

from .. import wire
from ..profiles import Profile
from ..results import Row, Target
from .common import HOST, Certificates, ServerLife, library_warnings, other_warnings

#: Clients that connect during each burst (the kernel queues them).
QUEUED_CLIENTS: Final = 3
#: "Serves new clients as soon as fds are free": within this many seconds.
RECOVERY_LIMIT: Final = 1.5
#: How long queued clients wait for their echo once fds are free (beyond the
#: recovery limit, so that a slow recovery is measured, not a timeout).
WAIT_AFTER_BURST: Final = 4.0
#: Connection ids of the queued clients.
QUEUED_IDS: Final = 1 << 50


class QueuedClient:
    """A client that connects while the server cannot accept, and waits for its echo."""

    def __init__(self, port: int, cid: int) -> None:
        self.line = b"queued %d\n" % cid
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.sendall(wire.header(wire.ECHO, cid) + self.line)
        self.answered_at: float | None = None
        self.error: str | None = None

    def answered_early(self) -> bool:
        """True if a reply is already there (the server accepted during the burst)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def wait(self, deadline: float) -> None:
        got = b""
        try:
            while len(got) < len(self.line):
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = self.sock.recv(len(self.line) - len(got))
                if not chunk:
                    self.error = f"EOF after {got!r}"
                    return
                got += chunk
        except OSError as exc:
            self.error = repr(exc)
            return
        if got != self.line:
            self.error = f"echo {got!r} is not {self.line!r}"
            return
        self.answered_at = time.monotonic()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Burst:
    """What one fd-exhaustion burst showed."""

    #: portastreams records at WARNING or above during the burst.
    logs: int
    #: Other loggers' records at WARNING or above during the burst.
    other_logs: int
    #: ``is_serving()`` during the burst.
    serving: bool
    #: Queued clients answered before fds were free (the burst did not bite).
    early: int
    #: Seconds from freeing fds to the last queued client's echo (None: not all).
    recovery: float | None
    errors: list[str] = field(default_factory=list)


def exhaust_fds_once(
    life: ServerLife, seconds: float, first_cid: int, *, from_idle: bool = True
) -> Burst:
    """One burst: no fd left for ``seconds`` while clients queue; then recovery.

    ``from_idle``: first wait until the server is idle (connections of a
    previous burst gone: a descriptor freed during the burst would let an
    accept() through). The soak bursts in the middle of its traffic instead.
    """
    server = life.server
    before = life.settle_idle() if from_idle else life.status()
    server.call("exhaust_fds")
    clients: list[QueuedClient] = []
    restored_at = 0.0
    try:
        started = time.monotonic()
        for index in range(QUEUED_CLIENTS):
            target = started + index * seconds / (QUEUED_CLIENTS + 1)
            time.sleep(max(target - time.monotonic(), 0))
            clients.append(QueuedClient(life.port, first_cid + index))
        time.sleep(max(started + seconds - time.monotonic(), 0))
        during = life.status()
        early = sum(client.answered_early() for client in clients)
    finally:
        server.call("restore_fds")
        restored_at = time.monotonic()
    try:
        deadline = restored_at + WAIT_AFTER_BURST
        for client in clients:
            client.wait(deadline)
    finally:
        for client in clients:
            client.close()
    answered = [c.answered_at for c in clients if c.answered_at is not None]
    return Burst(
        logs=library_warnings(during) - library_warnings(before),
        other_logs=sum(other_warnings(during).values())
        - sum(other_warnings(before).values()),
        serving=bool(during["serving"]),
        early=early,
        recovery=max(answered) - restored_at if len(answered) == len(clients) else None,
        errors=[c.error for c in clients if c.error is not None],
    )


def run_fd_exhaustion(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """``RLIMIT_NOFILE`` lowered so that accept() fails with EMFILE, then restored.

    On every backend the server must log once per burst, keep serving
    (``is_serving()`` stays true), and answer the clients that queued during
    the burst, and new ones, as soon as descriptors are free again.
    """
    row = Row("fd_exhaustion", target)
    with ServerLife(row, profile) as life:
        bursts = [
            exhaust_fds_once(life, profile.burst_seconds, QUEUED_IDS + 100 * index)
            for index in range(profile.exhaustion_bursts)
        ]
        final = life.settle_idle()
        known = [b.recovery for b in bursts if b.recovery is not None]
        row.figures["bursts"] = len(bursts)
        row.figures["accept_error_logs"] = "/".join(
            str(b.logs + b.other_logs) for b in bursts
        )
        row.figures["recovery_s"] = max(known) if len(known) == len(bursts) else None
        for index, burst in enumerate(bursts, 1):
            row.check(
                burst.early == 0,
                f"burst {index}: clients were served while no fd was free: the "
                "exhaustion did not take effect",
            )
            row.check(
                not burst.errors,
                f"burst {index}: clients queued during the burst were not served "
                f"after it: {burst.errors}",
            )
            row.check(
                burst.recovery is None or burst.recovery <= RECOVERY_LIMIT,
                f"burst {index}: queued clients served {burst.recovery} s after fds "
                f"were free (limit {RECOVERY_LIMIT} s)",
            )
            row.check(burst.serving, f"burst {index}: is_serving() was False")
            if not target.is_control:
                row.check(
                    burst.logs == 1 and burst.other_logs == 0,
                    f"burst {index}: {burst.logs} portastreams and "
                    f"{burst.other_logs} other log records at WARNING or above "
                    "during the burst, expected exactly one",
                )
        life.check_logs(final, expected=len(bursts), what="one per burst")
        life.check_serving()
        life.finish()
    return row


def run_memory_errors(
    target: Target, profile: Profile, certificates: Certificates | None = None
) -> Row:
    """Handlers that cannot allocate their state (MemoryError) among normal clients.

    Each failing handler's client sees a clean EOF, the failure is logged
    once, the normal clients are served, nothing leaks.
    """
    row = Row("memory_error", target)
    with ServerLife(row, profile) as life:
        count = profile.memory_errors
        sessions: list[list[object]] = []
        for index in range(count):
            sessions.append(["memory_error", 2 * index, profile.seed + index, {}])
            sessions.append(["echo", 2 * index + 1, profile.seed + index, {"lines": 3}])
        outcomes = life.run_sessions(sessions, concurrency=16)
        final = life.settle_idle()
        life.check_outcomes(outcomes)
        life.check_delivery(outcomes)
        memory_errors = final["stats"]["escaped"].get("MemoryError", 0)
        row.figures["memory_errors"] = memory_errors
        row.check(
            memory_errors == count, f"{memory_errors} of {count} MemoryErrors seen"
        )
        life.check_logs(final)
        life.check_serving()
        life.finish()
    return row
