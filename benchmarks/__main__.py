"""``python -m benchmarks`` (and ``nox -s bench``): run the suite."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import os
import pstats
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import contenders, placements, runner, serving, workloads
from .contenders import Contender
from .placements import Placement
from .workloads import ServerWorkload, Workload

if TYPE_CHECKING:
    from . import report

T = TypeVar("T", Workload, Contender, ServerWorkload, Placement)


class Named(Protocol):
    @property
    def name(self) -> str: ...


def _matches(items: Sequence[T], patterns: Sequence[str]) -> list[T]:
    return [
        item
        for item in items
        if any(fnmatch.fnmatchcase(item.name, p) for p in patterns)
    ]


def _select(
    items: Sequence[T], patterns: str | None, what: str, *others: Sequence[Named]
) -> list[T]:
    """The items matching comma-separated glob ``patterns`` (all without patterns).

    A pattern must match something in ``items`` or in one of ``others`` (the
    other lists the same option chooses from: client and server workloads).
    """
    if not patterns:
        return list(items)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    names = list(
        dict.fromkeys([item.name for item in items])
        | dict.fromkeys(item.name for group in others for item in group)
    )
    for pattern in wanted:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            choices = ", ".join(names)
            raise SystemExit(f"no {what} matches {pattern!r} (choose from {choices})")
    return _matches(items, wanted)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Benchmarks of portastreams against asyncio's streams and servers, "
            "AnyIO's BufferedByteStream and hand-written trio code, each "
            "measurement in a fresh process: clients against a blocking-socket "
            "peer process, servers under redis-benchmark and wrk."
        ),
    )
    result.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every workload's size (default 1: 2M lines, 2 GiB, "
        "100,000 requests per redis-benchmark test, 8 s of wrk, ...; "
        "0.01 for a quick run)",
    )
    result.add_argument(
        "--rounds", type=int, default=5, help="rounds (median over them; default 5)"
    )
    result.add_argument(
        "--workloads",
        metavar="NAMES",
        help="comma-separated names or glob patterns; clients: "
        f"{', '.join(workloads.workload_names())}; servers: "
        f"{', '.join(workloads.server_workload_names())}",
    )
    result.add_argument(
        "--contenders",
        metavar="NAMES",
        help="comma-separated names or glob patterns, e.g. 'portastreams/*,*/trio' "
        f"({', '.join(dict.fromkeys(contenders.contender_names() + contenders.server_contender_names()))})",
    )
    result.add_argument(
        "--placements",
        metavar="NAMES",
        help="where the two processes of a measurement run, comma-separated: "
        f"{', '.join(placements.placement_names())} (default: all three for "
        f"the clients, {', '.join(SERVER_PLACEMENTS)} for the servers)",
    )
    result.add_argument(
        "--cpus",
        metavar="A,B",
        help="the two CPUs of the pinned placements: split puts the peer or "
        "server on A and the client or load generator on B, shared puts both "
        "on B (default: the lowest and the highest usable CPU)",
    )
    result.add_argument(
        "--idle-connections",
        type=int,
        default=1000,
        metavar="N",
        help="idle connections a server holds for its memory figure (default 1000)",
    )
    result.add_argument("--json", type=Path, metavar="PATH", help="write all results")
    result.add_argument(
        "--plot", type=Path, metavar="PATH", help="bar charts of the ratios (PNG)"
    )
    result.add_argument(
        "--rst", type=Path, metavar="PATH", help="write a reStructuredText results page"
    )
    result.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one measurement (or one load-generator run) may take "
        "(default 900)",
    )
    result.add_argument(
        "--seed", type=int, default=0, help="seed of the contender order shuffle"
    )
    result.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="instead of benchmarking, run each selected client workload x "
        "contender once (in the first selected placement) under cProfile, write "
        "DIR/<workload>-<contender>.prof and print the top functions",
    )
    result.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="do not run anything: print the tables (and write --plot/--rst) from "
        "the results a previous run saved with --json",
    )
    result.add_argument(
        "--list", action="store_true", help="list workloads and contenders and exit"
    )
    return result


#: The server placements by default: the load generator and the server each
#: on a core of their own, and the scheduler's choice.
SERVER_PLACEMENTS = ("split", "unpinned")


def list_choices(scale: float) -> None:
    print("Client workloads:")
    for workload in workloads.WORKLOADS:
        size = workload.describe_size(workload.size(scale))
        latency = " [latency-bound]" if workload.latency else ""
        print(f"  {workload.name:10} {size:32} {workload.description}{latency}")
    print("Client contenders:")
    for contender in contenders.CONTENDERS:
        print(f"  {contender.name:26} {contender.description}")
    print("Server workloads:")
    for server_workload in workloads.SERVER_WORKLOADS:
        size = server_workload.describe_size(server_workload.size(scale))
        print(f"  {server_workload.name:10} {size:48} {server_workload.description}")
    print("Server contenders:")
    for contender in contenders.SERVER_CONTENDERS:
        print(f"  {contender.name:26} {contender.description}")
    print("Placements:")
    for placement in placements.PLACEMENTS:
        print(f"  {placement.name:10} {placement.description}")


def profile(settings: runner.Settings, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    status = 0
    usable = settings.usable_placements()
    if not usable:
        raise SystemExit("no selected placement is possible here")
    placement, (peer_cpu, client_cpu) = usable[0]
    for workload in settings.workloads:
        size = workload.size(settings.scale)
        with runner.Peer(workload, size, peer_cpu) as peer:
            for contender in settings.contenders:
                name = f"{workload.name}-{contender.name.replace('/', '-')}"
                path = directory / f"{name}.prof"
                run = runner.measure(
                    workload,
                    contender,
                    peer,
                    size,
                    client_cpu,
                    settings.timeout,
                    profile=str(path),
                    placement=placement.name,
                )
                print(
                    f"\n=== {workload.name} {contender.name} ({placement.name}): ",
                    end="",
                )
                if not run.verified:
                    print(f"FAILED: {run.error}")
                    status = 1
                    continue
                print(f"{run.seconds:.3f} s under cProfile -> {path}")
                stats = pstats.Stats(str(path))
                stats.sort_stats("tottime").print_stats(25)
    return status


def _cpu_pair(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return placements.default_cpus()
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise SystemExit(
            f"--cpus takes two CPU numbers, e.g. 0,1; not {text!r}"
        ) from None
    return (first, second)


def settings_from(
    args: argparse.Namespace,
) -> tuple[runner.Settings, serving.ServerSettings]:
    """The client and the server settings the command line asks for."""
    workload_patterns = args.workloads
    chosen_workloads = _select(
        workloads.WORKLOADS, workload_patterns, "workload", workloads.SERVER_WORKLOADS
    )
    chosen_server_workloads = _select(
        workloads.SERVER_WORKLOADS, workload_patterns, "workload", workloads.WORKLOADS
    )
    chosen_contenders = _select(
        contenders.CONTENDERS,
        args.contenders,
        "contender",
        contenders.SERVER_CONTENDERS,
    )
    chosen_server_contenders = _select(
        contenders.SERVER_CONTENDERS,
        args.contenders,
        "contender",
        contenders.CONTENDERS,
    )
    if args.placements:
        client_placements = _select(placements.PLACEMENTS, args.placements, "placement")
        server_placements = client_placements
    else:
        client_placements = list(placements.PLACEMENTS)
        server_placements = [placements.get(name) for name in SERVER_PLACEMENTS]
    cpus = _cpu_pair(args.cpus)
    settings = runner.Settings(
        scale=args.scale,
        rounds=args.rounds,
        workloads=chosen_workloads if chosen_contenders else [],
        contenders=chosen_contenders,
        placements=client_placements,
        cpus=cpus,
        timeout=args.timeout,
        seed=args.seed,
    )
    server_settings = serving.ServerSettings(
        scale=args.scale,
        rounds=args.rounds,
        workloads=chosen_server_workloads if chosen_server_contenders else [],
        contenders=chosen_server_contenders,
        placements=server_placements,
        cpus=cpus,
        idle_connections=args.idle_connections,
        timeout=args.timeout,
        seed=args.seed,
    )
    return settings, server_settings


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    if args.list:
        list_choices(args.scale)
        return 0
    if args.scale <= 0 or args.rounds < 1 or args.idle_connections < 0:
        raise SystemExit(
            "--scale must be > 0, --rounds >= 1 and --idle-connections >= 0"
        )
    if args.from_json is not None:
        return rerender(args)
    settings, server_settings = settings_from(args)
    if args.profile is not None:
        return profile(settings, args.profile)
    return benchmark(settings, server_settings, arguments, args)


def rerender(args: argparse.Namespace) -> int:
    """The tables, plot and page of a saved run (``--from-json``)."""
    from . import report

    meta, runs, server_runs = report.read_json(args.from_json)
    cpus = meta.get("cpus")
    pair = (cpus[0], cpus[1]) if cpus else None
    settings = runner.Settings(
        scale=meta["scale"],
        rounds=meta["rounds"],
        workloads=[workloads.get(name) for name in meta["workloads"]],
        contenders=[contenders.get(name) for name in meta["contenders"]],
        placements=[placements.get(n) for n in meta.get("client_placements", [])],
        cpus=pair,
    )
    server_settings = serving.ServerSettings(
        scale=meta["scale"],
        rounds=meta["rounds"],
        workloads=[
            workloads.get_server(name) for name in meta.get("server_workloads", {})
        ],
        contenders=[
            contenders.get_server(name) for name in meta.get("server_contenders", {})
        ],
        placements=[placements.get(n) for n in meta.get("server_placements", [])],
        cpus=pair,
        idle_connections=meta.get("idle_connections", 0),
    )
    results = report.Results(
        meta,
        settings,
        server_settings,
        runs,
        runner.summarize(runs),
        server_runs,
        serving.summarize(server_runs),
    )
    report.print_tables(results)
    if args.json is not None and args.json != args.from_json:
        report.write_json(args.json, results)
    return write_figures(args, results)


def write_figures(args: argparse.Namespace, results: report.Results) -> int:
    """Write ``--plot`` and ``--rst``."""
    from . import report

    plot_path: Path | None = None
    if args.plot is not None:
        if report.write_plot(args.plot, results):
            plot_path = args.plot
        else:
            print("matplotlib is not installed: no plot", file=sys.stderr)
    if args.rst is not None:
        report.write_rst(args.rst, results, plot_path)
    return 0


def benchmark(
    settings: runner.Settings,
    server_settings: serving.ServerSettings,
    arguments: list[str],
    args: argparse.Namespace,
) -> int:
    from . import report

    started = datetime.datetime.now(datetime.timezone.utc)
    load_at_start = os.getloadavg()
    runnable, paths, skipped = serving.available(server_settings.workloads)
    for name, hint in skipped.items():
        print(f"skipping the {name} workload: {hint}", file=sys.stderr)
    server_settings.workloads = runnable
    client_count = (
        len(settings.usable_placements())
        * len(settings.workloads)
        * len(settings.contenders)
    )
    server_count = (
        len(placements.resolve(server_settings.placements, server_settings.cpus))
        * len(server_settings.workloads)
        * len(server_settings.contenders)
    )
    total = settings.rounds * (client_count + server_count)
    shuffler = random.Random(settings.seed)
    runs: list[runner.Run] = []
    server_runs: list[serving.ServerRun] = []
    with progress_reporter(total) as update:
        for round_ in range(settings.rounds):
            runs += runner.run_round(settings, update, round_, shuffler)
            server_runs += serving.run_suite(
                server_settings, paths, update, round_, shuffler
            )
    results = report.Results(
        report.meta(
            settings, server_settings, skipped, arguments, started, load_at_start
        ),
        settings,
        server_settings,
        runs,
        runner.summarize(runs),
        server_runs,
        serving.summarize(server_runs),
    )
    report.print_tables(results)
    if args.json is not None:
        report.write_json(args.json, results)
    write_figures(args, results)
    failures = sum(not run.verified for run in runs)
    failures += sum(not run.verified for run in server_runs)
    if failures:
        print(f"{failures} measurement(s) failed", file=sys.stderr)
        return 1
    return 0


#: Told before (``None``) and after each measurement (client or server).
Progress = Callable[[str, "runner.Run | serving.ServerRun | None"], None]


def outcome_text(run: runner.Run | serving.ServerRun) -> str:
    """How one measurement went, in a few words."""
    if not run.verified:
        return f"FAILED: {run.error}"
    if isinstance(run, serving.ServerRun):
        return ", ".join(
            f"{test.test} {test.requests_per_second:,.0f}/s" for test in run.tests
        )
    return f"{run.seconds:.3f} s"


@contextlib.contextmanager
def progress_reporter(total: int) -> Iterator[Progress]:
    """A rich progress bar on stderr in a terminal, else one line per measurement."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:
        console = None
    else:
        console = Console(stderr=True)
    if console is None or not console.is_terminal:
        # No live bar without a terminal (nox, CI, a log file): a line each.
        done = 0
        start = time.monotonic()

        def plain(label: str, run: runner.Run | serving.ServerRun | None) -> None:
            nonlocal done
            if run is None:
                return
            done += 1
            outcome = outcome_text(run)
            elapsed = time.monotonic() - start
            print(
                f"[{done}/{total} {elapsed:5.0f}s] {label}: {outcome}",
                file=sys.stderr,
                flush=True,
            )

        yield plain
        return

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=2,
    ) as progress:
        task = progress.add_task("starting", total=total)

        def update(label: str, run: runner.Run | serving.ServerRun | None) -> None:
            if run is None:
                progress.update(task, description=label)
                return
            if not run.verified:
                progress.console.print(
                    f"FAILED {label}: {run.error}", style="red", markup=False
                )
            progress.advance(task)

        yield update


if __name__ == "__main__":
    sys.exit(main())
