"""What every experiment shares: a server's life cycle, load jobs, and the checks.

An experiment runs one server process (:class:`ServerLife`) through:

1. a warm-up cycle (serve, a probe connection, close), so that lazily opened
   resources exist before anything is counted;
2. the *baseline* status: fds and tasks of the process before it serves;
3. ``serve`` and the *idle* status;
4. the experiment's traffic, then its checks;
5. ``close()`` + ``wait_closed()``, and the *final* status, which must show
   exactly the baseline's fds and tasks (after a short grace period for
   asynchronous closing): nothing leaked, on any path.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .. import wire
from ..processes import LoadGenerator, StressServer
from ..profiles import Profile
from ..results import Row, Target

HOST: Final = "127.0.0.1"
#: How long asynchronous closing may take to bring the counts back.
SETTLE_SECONDS: Final = 5.0
#: Connection ids of the orchestrator's own probes (clients use lower ones).
PROBE_IDS: Final = 1 << 60
WARNING_LEVELS: Final = ("WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a certificate for "localhost", as files."""

    cafile: str
    certfile: str
    keyfile: str

    @classmethod
    @contextmanager
    def create(cls) -> Iterator[Certificates]:
        import trustme

        authority = trustme.CA()
        issued = authority.issue_cert("localhost")
        with tempfile.TemporaryDirectory(prefix="stress-tls-") as directory:
            path = Path(directory)
            authority.cert_pem.write_to_path(str(path / "ca.pem"))
            issued.private_key_pem.write_to_path(str(path / "key.pem"))
            issued.cert_chain_pems[0].write_to_path(str(path / "cert.pem"))
            yield cls(
                str(path / "ca.pem"), str(path / "cert.pem"), str(path / "key.pem")
            )

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


_probe_counter = 0


def probe_echo(
    port: int, timeout: float = 5.0, context: ssl.SSLContext | None = None
) -> None:
    """One verified echo round trip on a fresh connection; raises if it fails."""
    global _probe_counter
    _probe_counter += 1
    cid = PROBE_IDS + _probe_counter
    line = b"probe %d\n" % cid
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        if context is None:
            _exchange(raw, cid, line)
        else:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                _exchange(tls, cid, line)


def _exchange(sock: socket.socket, cid: int, line: bytes) -> None:
    sock.sendall(wire.header(wire.ECHO, cid) + line)
    got = b""
    while len(got) < len(line):
        chunk = sock.recv(len(line) - len(got))
        if not chunk:
            raise ConnectionError(f"EOF after {got!r} instead of the echo")
        got += chunk
    if got != line:
        raise AssertionError(f"probe echo {got!r} is not {line!r}")


def log_levels(status: dict[str, Any]) -> dict[str, int]:
    """Log records by level, over every logger."""
    by_level: Counter[str] = Counter()
    for key, count in status["logs"]["counts"].items():
        by_level[key.rsplit("/", 1)[1]] += count
    return dict(by_level)


def library_warnings(status: dict[str, Any]) -> int:
    """Records of the ``portastreams`` logger at WARNING or above."""
    return sum(
        count
        for key, count in status["logs"]["counts"].items()
        if key.split("/")[0].startswith("portastreams")
        and key.rsplit("/", 1)[1] in WARNING_LEVELS
    )


def other_warnings(status: dict[str, Any]) -> dict[str, int]:
    """Records of any other logger at WARNING or above (asyncio, unraisable, ...)."""
    return {
        key: count
        for key, count in status["logs"]["counts"].items()
        if not key.split("/")[0].startswith("portastreams")
        and key.rsplit("/", 1)[1] in WARNING_LEVELS
    }


def escaped(status: dict[str, Any]) -> int:
    """Exceptions that escaped handlers (they must each be logged once)."""
    return sum(status["stats"]["escaped"].values())


#: Handler exceptions that are a peer's doing: logged as one INFO line (or not
#: at all when the server closed the connection itself), never as a warning.
CONNECTION_ERRORS = frozenset(
    {
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionAbortedError",
        "BrokenPipeError",
    }
)


def escaped_bugs(status: dict[str, Any]) -> int:
    """Escaped handler exceptions that are not connection errors (logged at ERROR)."""
    return sum(
        count
        for name, count in status["stats"]["escaped"].items()
        if name not in CONNECTION_ERRORS
    )


def messages(status: dict[str, Any], limit: int = 6) -> str:
    kept = [m for m in status["logs"]["messages"] if "/DEBUG" not in m.split(":")[0]]
    return "; ".join(m.replace("\n", " ")[:200] for m in kept[:limit])


class ServerLife:
    """One server process through warm-up, baseline, serving and final checks."""

    def __init__(
        self,
        row: Row,
        profile: Profile,
        certificates: Certificates | None = None,
        handshake_timeout: float = 60.0,
    ) -> None:
        self.row = row
        self.profile = profile
        self.certificates = certificates
        self.handshake_timeout = handshake_timeout
        self.target: Target = row.target
        self.server: StressServer
        self.baseline: dict[str, Any] = {}
        self.idle: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        self.closed = False

    # -- life cycle -----------------------------------------------------------

    def __enter__(self) -> ServerLife:
        certificates = self.certificates
        self.server = StressServer(
            self.target.impl,
            self.target.backend,
            certfile=certificates.certfile if certificates else None,
            keyfile=certificates.keyfile if certificates else None,
            handshake_timeout=self.handshake_timeout,
        )
        try:
            self._warm_up()
            self.baseline = self.server.status()
            self.ports = self.server.call("serve")
            self.server.call("reset")
            self.idle = self.server.status()
        except BaseException:
            self.server.kill()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.kill()

    def _warm_up(self) -> None:
        """Serve one client (and a TLS one) and close, so that lazily opened
        resources exist before the baseline; then let the last closing tasks
        finish (the baseline must not count them)."""
        before = self.server.status()
        ports = self.server.call("serve")
        probe_echo(ports["port"])
        if self.certificates is not None:
            probe_echo(ports["tls_port"], context=self.certificates.client_context())
        self.server.call("wait_closed", timeout=10)
        self.settle(lambda status: status["tasks"] == before["tasks"])

    @property
    def port(self) -> int:
        return self.ports["port"]

    def status(self) -> dict[str, Any]:
        return self.server.status()

    def settle(
        self, done: Callable[[dict[str, Any]], bool], seconds: float = SETTLE_SECONDS
    ) -> dict[str, Any]:
        """Poll the status until ``done(status)`` or ``seconds`` pass; the last status."""
        deadline = time.monotonic() + seconds
        while True:
            status = self.server.status()
            if done(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def settle_idle(self) -> dict[str, Any]:
        """Wait until no handler runs and fds/tasks are back to the idle figures."""
        idle = self.idle

        def is_idle(status: dict[str, Any]) -> bool:
            return bool(
                status["stats"]["live"] == 0
                and status["fds"] == idle["fds"]
                and status["tasks"] == idle["tasks"]
            )

        status = self.settle(is_idle)
        if not is_idle(status):
            self.row.fail(
                f"not idle again after the traffic: {status['stats']['live']} handlers "
                f"running, fds {idle['fds']} -> {status['fds']}, "
                f"tasks {idle['tasks']} -> {status['tasks']}"
            )
        return status

    def check_serving(self) -> None:
        """A fresh client gets a verified echo: the server still serves."""
        try:
            probe_echo(self.port)
        except (OSError, AssertionError) as exc:
            self.row.fail(f"the server no longer serves a new client: {exc!r}")
        else:
            self.row.figures["still_serving"] = "yes"
            return
        self.row.figures["still_serving"] = "NO"

    def finish(self, close_timeout: float = 30.0) -> dict[str, Any]:
        """close() + wait_closed(); fds and tasks must be back to the baseline."""
        reply = self.server.call(
            "wait_closed", timeout=close_timeout, reply_timeout=close_timeout + 10
        )
        if reply["timed_out"]:
            self.row.fail(f"wait_closed() did not return within {close_timeout} s")
        baseline = self.baseline

        def back(status: dict[str, Any]) -> bool:
            return bool(
                status["fds"] == baseline["fds"]
                and status["tasks"] == baseline["tasks"]
            )

        final = self.settle(back)
        fds = None if final["fds"] is None else final["fds"] - baseline["fds"]
        tasks = final["tasks"] - baseline["tasks"]
        self.row.figures["fds_leaked"] = fds
        self.row.figures["tasks_leaked"] = tasks
        self.row.check(fds == 0, f"{fds} file descriptors leaked")
        self.row.check(tasks == 0, f"{tasks} tasks leaked")
        self.server.exit()
        return final

    # -- load -----------------------------------------------------------------

    def run_sessions(
        self,
        sessions: list[list[Any]],
        *,
        concurrency: int = 32,
        step_timeout: float = 30.0,
        timeout: float = 300.0,
    ) -> list[dict[str, Any]]:
        """Run client sessions in one load generator; their outcomes."""
        with self.load_generator(sessions, concurrency, step_timeout) as load:
            outcomes: list[dict[str, Any]] = load.result(timeout)["outcomes"]
        return outcomes

    def load_generator(
        self,
        sessions: list[list[Any]],
        concurrency: int = 32,
        step_timeout: float = 30.0,
        **extra: Any,
    ) -> LoadGenerator:
        job = {
            "job": "sessions",
            "port": self.port,
            "tls_port": self.ports.get("tls_port"),
            "cafile": self.certificates.cafile if self.certificates else None,
            "handshake_timeout": self.handshake_timeout,
            "sessions": sessions,
            "concurrency": concurrency,
            "step_timeout": step_timeout,
            **extra,
        }
        return LoadGenerator(job)

    def ledger(self) -> dict[str, list[Any]]:
        entries: dict[str, list[Any]] = self.server.call("ledger")["entries"]
        return entries

    # -- checks -----------------------------------------------------------------

    def check_outcomes(self, outcomes: list[dict[str, Any]]) -> None:
        """Every session saw what the protocol promises."""
        failed = [o for o in outcomes if not o["ok"]]
        by_scenario = Counter(o["scenario"] for o in failed)
        if failed:
            examples = "; ".join(
                f"{o['scenario']} #{o['cid']}: {o['detail']} ({o['end']})"
                for o in failed[:5]
            )
            self.row.fail(
                f"{len(failed)} of {len(outcomes)} sessions failed "
                f"({dict(by_scenario)}): {examples}"
            )
        self.row.figures["sessions"] = len(outcomes)
        self.row.figures["sessions_ok"] = len(outcomes) - len(failed)

    def check_delivery(self, outcomes: list[dict[str, Any]]) -> int:
        """Everything the server wrote arrived; returns (and records) the bytes lost.

        See :func:`delivery`.
        """
        verified, lost, problems = delivery(outcomes, self.ledger())
        if problems:
            self.row.fail(
                f"{len(problems)} deliveries wrong: " + "; ".join(problems[:5])
            )
        self.row.figures["bytes_verified"] = verified
        self.row.figures["bytes_lost"] = lost
        self.row.check(lost == 0, f"{lost} bytes lost")
        return lost

    def check_logs(
        self,
        status: dict[str, Any],
        expected: int | None = None,
        what: str = "handler failures",
    ) -> None:
        """Logging as specified: one library record per handler bug, nothing else.

        ``expected`` is how many ``portastreams`` records at WARNING or above
        there must be (default: one per exception that escaped a handler and
        is not a connection error -- a peer's reset is one INFO line, see
        docs/production.rst). No other logger may report anything at WARNING
        or above. The control's logging is reported, not checked.
        """
        self.row.figures["logs"] = log_levels(status)
        self.row.figures["handler_errors"] = escaped(status)
        if self.target.is_control:
            return
        if expected is None:
            expected = escaped_bugs(status)
        records = library_warnings(status)
        self.row.check(
            records == expected,
            f"{records} portastreams log records at WARNING or above, expected "
            f"{expected} ({what}): {messages(status)}",
        )
        others = other_warnings(status)
        self.row.check(
            not others, f"unexpected log records {others}: {messages(status)}"
        )


def delivery(
    outcomes: list[dict[str, Any]], ledger: dict[str, list[Any]]
) -> tuple[int, int, list[str]]:
    """Compare what clients received with the server's ledger.

    Returns ``(bytes verified, bytes lost, problems)``. For each session whose
    connection ended cleanly (EOF, or closed by the client after every
    expected reply) and whose replies are exactly known, the ledger must show
    ``written_open <= received <= written``: every byte the handler wrote
    while the connection was open arrived, and nothing else did. Bytes a
    scenario itself found missing count as lost too.
    """
    lost = 0
    verified = 0
    problems = []
    for outcome in outcomes:
        verified += outcome["verified"]
        lost += outcome["lost"]
        if not outcome["exact"] or outcome["end"] not in ("eof", "closed"):
            continue
        name = f"{outcome['scenario']} #{outcome['cid']}"
        entry = ledger.get(str(outcome["cid"]))
        if entry is None:
            problems.append(f"{name}: the server has no record of it")
            continue
        _mode, written, written_open, _read, _result = entry
        received = outcome["received"]
        if received < written_open:
            lost += written_open - received
            problems.append(
                f"{name}: received {received} of {written_open} bytes written"
            )
        elif received > written:
            problems.append(
                f"{name}: received {received}, more than the {written} written"
            )
    return verified, lost, problems
