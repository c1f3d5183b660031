"""Running the server workloads: server processes, load generators, rounds, summaries.

One measurement is one server contender in a fresh process (see
:mod:`.server`) under one server workload in one placement:

1. the harness's own client checks every reply the server may give
   (:func:`.server_check.check_resp` / :func:`~.server_check.check_http`);
2. it opens ``idle_connections`` connections, each served once and then
   idle, and reads the server's ``VmRSS`` before and with them: the server's
   memory per idle connection;
3. each test of the workload runs the load generator once (pinned as the
   placement says); the server's request counters and CPU time are read
   before and after, so every request the tool got a reply to must have
   been served (and no more than it sent) and the CPU time is the server's
   own;
4. after the RESP tests, ``GET key:__rand_int__`` must return what
   redis-benchmark's ``SET`` stored; and the server must have written
   nothing to stderr (no handler error).

Any failed check makes the measurement unverified, and its figures are not
used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from . import contenders, loadgen, placements, server_check, workloads
from ._check import Mismatch, expect
from .contenders import Contender
from .placements import CpuPair, Placement, default_cpus
from .runner import ROOT, child_environment
from .workloads import ServerWorkload

#: Seconds a server process may take to start and to answer ``STATS``.
CONTROL_TIMEOUT = 60.0
#: The server's request counter each test feeds.
COUNTED_AS = {
    "ping_inline": "PING",
    "ping_mbulk": "PING",
    "set": "SET",
    "get": "GET",
}


@dataclass
class ServerSettings:
    scale: float = 1.0
    rounds: int = 5
    workloads: Sequence[ServerWorkload] = workloads.SERVER_WORKLOADS
    contenders: Sequence[Contender] = contenders.SERVER_CONTENDERS
    placements: Sequence[Placement] = ()
    #: The two CPUs placements pin to (see placements.default_cpus).
    cpus: tuple[int, int] | None = field(default_factory=default_cpus)
    idle_connections: int = 1000
    timeout: float = 900.0
    seed: int = 0


@dataclass
class ServerTest:
    """One load-generator run against a server."""

    test: str
    #: Requests the server served during the run (its own count).
    served: int
    #: What the load generator reported.
    requests: int
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    #: The server process's CPU time during the run.
    user_seconds: float
    system_seconds: float

    @property
    def cpu_us_per_request(self) -> float:
        return (self.user_seconds + self.system_seconds) * 1e6 / max(1, self.served)


@dataclass
class ServerRun:
    """One measurement: one server process under one workload."""

    round: int
    position: int
    workload: str
    placement: str
    contender: str
    size: int
    verified: bool
    server_cpu: int | None = None
    tool_cpu: int | None = None
    #: The 1-minute load average when the measurement started.
    load_average: float | None = None
    tests: list[ServerTest] = field(default_factory=list)
    idle_connections: int = 0
    #: VmRSS before the idle connections (after the correctness checks).
    baseline_rss_kib: int | None = None
    #: (VmRSS with the idle connections - baseline) / idle connections.
    idle_kib_per_connection: float | None = None
    error: str | None = None


# -- the server process ----------------------------------------------------------


class ServerProcess:
    """A running :mod:`.server` process (ours to stop: it exits when its stdin closes)."""

    def __init__(
        self,
        protocol: str,
        contender: Contender,
        cpu: int | None,
        *,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
        start_timeout: float = CONTROL_TIMEOUT,
    ) -> None:
        """``wrapper``: a command the server runs under (valgrind, say), in
        the server's own process; ``env``: its environment (the suite's);
        ``start_timeout``: how long it may take to print its port."""
        command = [
            *wrapper,
            sys.executable,
            "-m",
            "benchmarks.server",
            protocol,
            contender.name,
        ]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        # Closed in close(): the server's stderr, read after it stopped.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_environment() if env is None else env,
            cwd=ROOT,
            bufsize=0,
        )
        self._pending = b""
        try:
            line = self._read_line(start_timeout)
            if not line.startswith("PORT "):
                raise RuntimeError(f"the server did not start: {line!r}")
        except BaseException:
            self.stop()
            raise
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_line(self, timeout: float = CONTROL_TIMEOUT) -> str:
        """The next line the server prints, waiting at most ``timeout`` seconds."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise RuntimeError(f"the server printed nothing for {timeout:g} s")
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(
                        f"the server exited (code {self.process.wait()}): "
                        f"{self.stderr_text()[-2000:]}"
                    )
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def stats(self) -> dict[str, Any]:
        """Request counts, CPU seconds and VmRSS of the server now."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"STATS\n")
        stdin.flush()
        result: dict[str, Any] = json.loads(self._read_line())
        return result

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self) -> None:
        process = self.process
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def close(self) -> None:
        self.stop()
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- one measurement -----------------------------------------------------------------


def _cpu(stats: dict[str, Any]) -> tuple[float, float]:
    return float(stats["user_seconds"]), float(stats["system_seconds"])


def expected_served(workload: ServerWorkload, requests: int) -> int:
    """What redis-benchmark sends for ``-n requests``: whole pipelines of ``-P``."""
    pipeline = workload.pipeline
    return -(-requests // pipeline) * pipeline


def tool_command(
    workload: ServerWorkload, program: str, port: int, test: str, size: int
) -> list[str]:
    if workload.tool == "redis-benchmark":
        return loadgen.redis_benchmark_command(
            program, port, test, size, workload.connections, workload.pipeline
        )
    return loadgen.wrk_command(program, port, size, workload.connections)


def run_tool(
    workload: ServerWorkload, command: list[str], test: str, size: int, timeout: float
) -> loadgen.ToolResult:
    completed = subprocess.run(
        command, capture_output=True, timeout=timeout, check=False, cwd=ROOT
    )
    output = completed.stdout.decode(errors="replace")
    if completed.returncode != 0:
        errors = completed.stderr.decode(errors="replace")
        raise Mismatch(
            f"{workload.tool} exited with code {completed.returncode}: "
            f"{(output + errors)[-2000:]}"
        )
    if workload.tool == "redis-benchmark":
        return loadgen.parse_redis_benchmark(output, test, size)
    return loadgen.parse_wrk(output)


#: How long the server's request count must stay still after a load
#: generator exits before the harness reads it (see settled_stats).
SETTLE_SECONDS = 0.1


def settled_stats(
    server: ServerProcess, kind: str, ceiling: int | None
) -> dict[str, Any]:
    """The server's stats once it has answered what the load generator left behind.

    A load generator may exit with requests still in flight (redis-benchmark
    stops once it has read its replies, wrk when its time is up). Counted
    now, the server would serve them during the next test and make that
    test's count wrong. So: read the count until it reaches ``ceiling`` (all
    that was sent) or stays still for SETTLE_SECONDS, for at most a few
    seconds.
    """
    deadline = time.monotonic() + 5.0
    stats = server.stats()
    while time.monotonic() < deadline:
        if ceiling is not None and stats["counts"][kind] >= ceiling:
            break
        time.sleep(SETTLE_SECONDS)
        again = server.stats()
        if again["counts"][kind] == stats["counts"][kind]:
            return again
        stats = again
    return stats


def _run_test(
    workload: ServerWorkload,
    server: ServerProcess,
    program: str,
    test: str,
    size: int,
    tool_cpu: int | None,
    timeout: float,
) -> ServerTest:
    before = server.stats()
    command = placements.pinned_command(
        tool_cpu, tool_command(workload, program, server.port, test, size)
    )
    result = run_tool(workload, command, test, size, timeout)
    kind = COUNTED_AS.get(test, "PING") if workload.protocol == "resp" else "HTTP"
    ceiling = (
        before["counts"][kind] + expected_served(workload, size)
        if workload.tool == "redis-benchmark"
        else None
    )
    after = settled_stats(server, kind, ceiling)
    expect(not result.errors, "; ".join(result.errors))
    expect(
        after["counts"]["ERROR"] == before["counts"]["ERROR"],
        f"{test}: the server answered "
        f"{after['counts']['ERROR'] - before['counts']['ERROR']} error replies",
    )
    served = after["counts"][kind] - before["counts"][kind]
    if workload.tool == "redis-benchmark":
        # redis-benchmark read ``size`` replies; it sent whole pipelines, and
        # may exit before the server has answered the last few requests.
        sent = expected_served(workload, size)
        expect(
            size <= served <= sent,
            f"{test}: redis-benchmark read {size:,} replies to the {sent:,} "
            f"requests it sent, the server served {served:,}",
        )
    else:
        # wrk counts the responses it read; the last requests of each
        # connection may have been served when wrk stopped reading.
        expect(
            result.requests <= served <= result.requests + workload.connections,
            f"{test}: wrk counted {result.requests:,} responses, the server "
            f"served {served:,}",
        )
    expect(served > 0, f"{test}: no request served")
    user_before, system_before = _cpu(before)
    user_after, system_after = _cpu(after)
    return ServerTest(
        test=test,
        served=served,
        requests=result.requests,
        requests_per_second=result.requests_per_second,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        user_seconds=user_after - user_before,
        system_seconds=system_after - system_before,
    )


def measure(
    workload: ServerWorkload,
    contender: Contender,
    placement: Placement,
    cpus: CpuPair,
    size: int,
    program: str,
    *,
    idle_connections: int,
    timeout: float,
    round_: int = 0,
    position: int = 0,
) -> ServerRun:
    """One server process under ``workload``; see the module docstring."""
    server_cpu, tool_cpu = cpus
    run = ServerRun(
        round_, position, workload.name, placement.name, contender.name, size, False
    )
    run.server_cpu, run.tool_cpu = server_cpu, tool_cpu
    run.load_average = os.getloadavg()[0]
    run.idle_connections = idle_connections
    try:
        with ServerProcess(workload.protocol, contender, server_cpu) as server:
            server_check.CHECKS[workload.protocol](server.port, server_check.TIMEOUT)
            if idle_connections:
                baseline = int(server.stats()["rss_kib"])
                with server_check.idle_connections(
                    server.port, workload.protocol, idle_connections
                ):
                    loaded = int(server.stats()["rss_kib"])
                run.baseline_rss_kib = baseline
                run.idle_kib_per_connection = (loaded - baseline) / idle_connections
            for test in workload.tests:
                run.tests.append(
                    _run_test(workload, server, program, test, size, tool_cpu, timeout)
                )
            if workload.protocol == "resp":
                server_check.check_resp_benchmark_key(server.port)
            server.stop()
            stderr = server.stderr_text().strip()
            expect(not stderr, f"the server wrote to stderr: {stderr[-2000:]}")
    except subprocess.TimeoutExpired as exc:
        run.error = f"{workload.tool} timed out after {exc.timeout:g} s"
    except (Mismatch, loadgen.ToolOutputError, RuntimeError, OSError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    else:
        run.verified = True
    return run


# -- the suite -------------------------------------------------------------------------


def available(
    chosen: Sequence[ServerWorkload],
) -> tuple[list[ServerWorkload], dict[str, str], dict[str, str]]:
    """``(runnable workloads, {tool: path}, {skipped workload: install hint})``."""
    runnable: list[ServerWorkload] = []
    paths: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for workload in chosen:
        tool = loadgen.TOOLS[workload.tool]
        path = tool.path()
        if path is None:
            skipped[workload.name] = tool.install_hint()
            continue
        paths[workload.tool] = path
        runnable.append(workload)
    return runnable, paths, skipped


ProgressCallback = Callable[[str, ServerRun | None], None]


def run_suite(
    settings: ServerSettings,
    paths: dict[str, str],
    progress: ProgressCallback,
    round_: int,
    shuffler: random.Random,
) -> list[ServerRun]:
    """One round: every placement x workload, the contenders in shuffled order."""
    runs: list[ServerRun] = []
    for placement, cpus in placements.resolve(settings.placements, settings.cpus):
        for workload in settings.workloads:
            size = workload.size(settings.scale)
            order = list(settings.contenders)
            shuffler.shuffle(order)
            for position, contender in enumerate(order):
                label = (
                    f"round {round_ + 1}/{settings.rounds} {workload.name} "
                    f"{placement.name} {contender.name}"
                )
                progress(label, None)
                run = measure(
                    workload,
                    contender,
                    placement,
                    cpus,
                    size,
                    paths[workload.tool],
                    idle_connections=settings.idle_connections,
                    timeout=settings.timeout,
                    round_=round_,
                    position=position,
                )
                runs.append(run)
                progress(label, run)
    return runs


# -- summaries -------------------------------------------------------------------------


@dataclass
class ServerSummary:
    """One workload test x placement x contender over all rounds."""

    workload: str
    test: str
    placement: str
    contender: str
    backend: str
    size: int
    runs: int
    verified_runs: int
    #: Requests per second as the load generator measured them.
    median: float | None
    minimum: float | None
    maximum: float | None
    p50_ms: float | None
    p99_ms: float | None
    #: Server CPU time (user + system) per request, microseconds.
    cpu_us_per_request: float | None
    #: Server memory per idle connection, KiB (median over the rounds).
    idle_kib_per_connection: float | None
    native: str | None = None
    native_median: float | None = None
    #: median / native median: above 1 means more requests/s than native.
    ratio: float | None = None
    #: native CPU per request / this CPU per request: above 1 is cheaper.
    cpu_ratio: float | None = None
    #: idle KiB per connection / native's: below 1 is leaner.
    memory_ratio: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.runs > 0 and self.verified_runs == self.runs


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarize(runs: Sequence[ServerRun]) -> list[ServerSummary]:
    groups: dict[tuple[str, str, str, str], list[tuple[ServerRun, ServerTest | None]]]
    groups = {}
    for run in runs:
        tests = workloads.get_server(run.workload).tests
        for test in tests:
            found = [t for t in run.tests if t.test == test]
            key = (run.workload, test, run.placement, run.contender)
            groups.setdefault(key, []).append((run, found[0] if found else None))
    summaries: dict[tuple[str, str, str, str], ServerSummary] = {}
    for key, group in groups.items():
        workload, test, placement, contender = key
        good = [
            (run, result)
            for run, result in group
            if run.verified and result is not None
        ]
        rates = [result.requests_per_second for _, result in good if result]
        summaries[key] = ServerSummary(
            workload=workload,
            test=test,
            placement=placement,
            contender=contender,
            backend=contenders.get_server(contender).backend,
            size=group[0][0].size,
            runs=len(group),
            verified_runs=len(good),
            median=statistics.median(rates) if rates else None,
            minimum=min(rates) if rates else None,
            maximum=max(rates) if rates else None,
            p50_ms=_median([result.p50_ms for _, result in good if result]),
            p99_ms=_median([result.p99_ms for _, result in good if result]),
            cpu_us_per_request=_median(
                [result.cpu_us_per_request for _, result in good if result]
            ),
            idle_kib_per_connection=_median(
                [run.idle_kib_per_connection for run, _ in good]
            ),
            errors=sorted({run.error for run, _ in group if run.error}),
        )
    for (workload, test, placement, _), summary in summaries.items():
        natives = [
            summaries[workload, test, placement, name]
            for name in contenders.SERVER_NATIVE[summary.backend]
            if (workload, test, placement, name) in summaries
        ]
        timed = [n for n in natives if n.median is not None and n.verified]
        if not timed:
            continue
        native = max(timed, key=lambda n: n.median or 0.0)
        summary.native = native.contender
        summary.native_median = native.median
        if summary.median is not None and native.median:
            summary.ratio = summary.median / native.median
        if summary.cpu_us_per_request and native.cpu_us_per_request:
            summary.cpu_ratio = native.cpu_us_per_request / summary.cpu_us_per_request
        if (
            summary.idle_kib_per_connection is not None
            and native.idle_kib_per_connection
        ):
            summary.memory_ratio = (
                summary.idle_kib_per_connection / native.idle_kib_per_connection
            )
    order = {
        key: index
        for index, key in enumerate(
            (w.name, t, p.name, c.name)
            for w in workloads.SERVER_WORKLOADS
            for t in w.tests
            for p in placements.PLACEMENTS
            for c in contenders.SERVER_CONTENDERS
        )
    }
    return sorted(
        summaries.values(),
        key=lambda s: order[s.workload, s.test, s.placement, s.contender],
    )


def as_json(value: ServerRun | ServerSummary) -> dict[str, Any]:
    data = dataclasses.asdict(value)
    if isinstance(value, ServerSummary):
        data["verified"] = value.verified
    return data


def run_from_json(data: dict[str, Any]) -> ServerRun:
    fields = {f.name for f in dataclasses.fields(ServerRun)}
    values = {k: v for k, v in data.items() if k in fields}
    values["tests"] = [ServerTest(**test) for test in data.get("tests", [])]
    return ServerRun(**values)
