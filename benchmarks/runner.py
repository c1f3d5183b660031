"""Running the suite: peers, client processes, rounds, and the results' summary."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import contenders, placements, workloads
from .contenders import Contender
from .placements import CpuPair, Placement, default_cpus
from .workloads import Workload

#: The directory holding the ``benchmarks`` package: child processes need it
#: on ``sys.path`` whatever the current directory is.
ROOT = Path(__file__).resolve().parent.parent

#: Environment variables that would slow a measured process down.
_DEBUG_VARIABLES = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC")


def child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DEBUG_VARIABLES}
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def peer_size(workload: Workload, size: int) -> int:
    """What the peer must send for a workload of ``size`` (bytes; 0 if it only echoes)."""
    from . import patterns

    if workload.name in ("lines", "frames"):
        return size * patterns.ITEM_SIZE
    if workload.name == "bulk":
        return size
    return 0


@dataclass
class Settings:
    scale: float = 1.0
    rounds: int = 5
    workloads: Sequence[Workload] = workloads.WORKLOADS
    contenders: Sequence[Contender] = contenders.CONTENDERS
    #: Every workload runs in each of these placements.
    placements: Sequence[Placement] = placements.PLACEMENTS
    #: The two CPUs placements pin to (see placements.default_cpus).
    cpus: tuple[int, int] | None = field(default_factory=default_cpus)
    timeout: float = 900.0
    seed: int = 0

    def usable_placements(self) -> list[tuple[Placement, CpuPair]]:
        """The placements possible here, with their ``(peer, client)`` CPUs."""
        return placements.resolve(self.placements, self.cpus)


@dataclass
class Run:
    """One measurement (one client process)."""

    round: int
    position: int
    workload: str
    contender: str
    size: int
    verified: bool
    placement: str = "unpinned"
    peer_cpu: int | None = None
    client_cpu: int | None = None
    #: The 1-minute load average when the measurement started (how busy the
    #: machine was).
    load_average: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    #: cpu_seconds split into user and system (kernel) time, 10 ms resolution.
    user_seconds: float | None = None
    system_seconds: float | None = None
    maxrss_kib: int | None = None
    ru_maxrss_kib: int | None = None
    baseline_rss_kib: int | None = None
    detail: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class Peer:
    """A running peer process (ours to stop: it exits when its stdin closes)."""

    def __init__(self, workload: Workload, size: int, cpu: int | None) -> None:
        command = [
            sys.executable,
            "-m",
            "benchmarks.peer",
            workload.name,
            str(peer_size(workload, size)),
        ]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self.cpu = cpu
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_environment(),
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the {workload.name} peer did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        process = self.process
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def client_command(
    workload: Workload,
    contender: Contender,
    port: int,
    size: int,
    cpu: int | None,
    profile: str | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.client",
        workload.name,
        contender.name,
        str(port),
        str(size),
    ]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    if profile is not None:
        command += ["--profile", profile]
    return command


def measure(
    workload: Workload,
    contender: Contender,
    peer: Peer,
    size: int,
    cpu: int | None,
    timeout: float,
    *,
    round_: int = 0,
    position: int = 0,
    profile: str | None = None,
    placement: str = "unpinned",
) -> Run:
    """Run one client process (pinned to ``cpu``) against ``peer``; parse its report."""
    run = Run(round_, position, workload.name, contender.name, size, False)
    run.placement = placement
    run.client_cpu = cpu
    run.peer_cpu = peer.cpu
    run.load_average = os.getloadavg()[0]
    command = client_command(workload, contender, peer.port, size, cpu, profile)
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            env=child_environment(),
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        run.error = f"timed out after {timeout:g} s"
        return run
    lines = completed.stdout.decode(errors="replace").strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        stderr = completed.stderr.decode(errors="replace").strip()
        run.error = f"exit code {completed.returncode}: {stderr[-2000:]}"
        return run
    run.verified = bool(report.get("verified")) and completed.returncode == 0
    run.error = report.get("error")
    if run.verified:
        run.seconds = float(report["seconds"])
        run.cpu_seconds = float(report["cpu_seconds"])
        run.user_seconds = float(report["user_seconds"])
        run.system_seconds = float(report["system_seconds"])
        run.maxrss_kib = int(report["maxrss_kib"])
        run.ru_maxrss_kib = int(report["ru_maxrss_kib"])
        run.baseline_rss_kib = int(report["baseline_rss_kib"])
        run.detail = dict(report["detail"])
    elif run.error is None:
        run.error = completed.stderr.decode(errors="replace")[-2000:]
    return run


ProgressCallback = Callable[[str, Run | None], None]


def run_round(
    settings: Settings,
    progress: ProgressCallback,
    round_: int,
    shuffler: random.Random,
) -> list[Run]:
    """One round: every placement x workload (one peer each), the contenders shuffled.

    ``progress(description, run)`` is called before each measurement (with
    ``None``) and after it (with the run).
    """
    runs: list[Run] = []
    for placement, (peer_cpu, client_cpu) in settings.usable_placements():
        for workload in settings.workloads:
            size = workload.size(settings.scale)
            order = list(settings.contenders)
            shuffler.shuffle(order)
            with Peer(workload, size, peer_cpu) as peer:
                for position, contender in enumerate(order):
                    label = (
                        f"round {round_ + 1}/{settings.rounds} {workload.name} "
                        f"{placement.name} {contender.name}"
                    )
                    progress(label, None)
                    run = measure(
                        workload,
                        contender,
                        peer,
                        size,
                        client_cpu,
                        settings.timeout,
                        round_=round_,
                        position=position,
                        placement=placement.name,
                    )
                    runs.append(run)
                    progress(label, run)
    return runs


def run_suite(settings: Settings, progress: ProgressCallback) -> list[Run]:
    """Every round of :func:`run_round`."""
    shuffler = random.Random(settings.seed)
    runs: list[Run] = []
    for round_ in range(settings.rounds):
        runs += run_round(settings, progress, round_, shuffler)
    return runs


@dataclass
class Summary:
    """One workload x placement x contender over all rounds."""

    workload: str
    placement: str
    contender: str
    backend: str
    size: int
    runs: int
    verified_runs: int
    median: float | None
    minimum: float | None
    maximum: float | None
    cpu_median: float | None
    #: The highest peak RSS of the rounds.
    peak_rss_kib: int | None
    #: The most the workload raised the peak RSS above its value before the workload.
    rss_growth_kib: int | None
    native: str | None = None
    native_median: float | None = None
    #: native median / this median: above 1 means faster than the native contender.
    ratio: float | None = None
    #: The same with the client processes' CPU time (less sensitive to a busy machine).
    cpu_ratio: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.runs > 0 and self.verified_runs == self.runs


def summarize(runs: Sequence[Run]) -> list[Summary]:
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.placement, run.contender), []).append(run)
    summaries: dict[tuple[str, str, str], Summary] = {}
    for (workload, placement, contender), group in groups.items():
        good = [run for run in group if run.verified and run.seconds is not None]
        times = [run.seconds for run in good if run.seconds is not None]
        cpu = [run.cpu_seconds for run in good if run.cpu_seconds is not None]
        rss = [run.maxrss_kib for run in good if run.maxrss_kib is not None]
        # max(0, ...): the kernel's RSS counters are synchronised lazily, so
        # two VmHWM readings may be a few hundred KiB out of order.
        growth = [
            max(0, run.maxrss_kib - run.baseline_rss_kib)
            for run in good
            if run.maxrss_kib is not None and run.baseline_rss_kib is not None
        ]
        summaries[workload, placement, contender] = Summary(
            workload=workload,
            placement=placement,
            contender=contender,
            backend=contenders.get(contender).backend,
            size=group[0].size,
            runs=len(group),
            verified_runs=len(good),
            median=statistics.median(times) if times else None,
            minimum=min(times) if times else None,
            maximum=max(times) if times else None,
            cpu_median=statistics.median(cpu) if cpu else None,
            peak_rss_kib=max(rss) if rss else None,
            rss_growth_kib=max(growth) if growth else None,
            errors=sorted({run.error for run in group if run.error}),
        )
    for summary in summaries.values():
        candidates = [
            summaries[summary.workload, summary.placement, name]
            for name in contenders.NATIVE[summary.backend]
            if (summary.workload, summary.placement, name) in summaries
        ]
        timed = [c for c in candidates if c.median is not None and c.verified]
        if not timed:
            continue
        native = min(timed, key=lambda c: c.median or 0.0)
        summary.native = native.contender
        summary.native_median = native.median
        if summary.median:
            assert native.median is not None
            summary.ratio = native.median / summary.median
        if summary.cpu_median and native.cpu_median:
            summary.cpu_ratio = native.cpu_median / summary.cpu_median
    order = {
        (w.name, p.name, c.name): (i, j, k)
        for i, w in enumerate(workloads.WORKLOADS)
        for j, p in enumerate(placements.PLACEMENTS)
        for k, c in enumerate(contenders.CONTENDERS)
    }
    return sorted(
        summaries.values(),
        key=lambda s: order[s.workload, s.placement, s.contender],
    )


def as_json(value: Run | Summary) -> dict[str, Any]:
    data = dataclasses.asdict(value)
    if isinstance(value, Summary):
        data["verified"] = value.verified
    return data
