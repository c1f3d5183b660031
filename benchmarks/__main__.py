"""``python -m benchmarks`` (and ``nox -s bench``): run the suite."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import pstats
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import contenders, runner, workloads
from .contenders import Contender
from .workloads import Workload

T = TypeVar("T", Workload, Contender)


def _select(items: Sequence[T], patterns: str | None, what: str) -> list[T]:
    if not patterns:
        return list(items)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [
        item for item in items if any(fnmatch.fnmatchcase(item.name, p) for p in wanted)
    ]
    for pattern in wanted:
        if not any(fnmatch.fnmatchcase(item.name, pattern) for item in items):
            names = ", ".join(item.name for item in items)
            raise SystemExit(f"no {what} matches {pattern!r} (choose from {names})")
    return chosen


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Client-side benchmarks of portastreams against asyncio's streams, "
            "AnyIO's BufferedByteStream and a hand-written trio buffer, each in "
            "a fresh process, against a blocking-socket peer process on loopback."
        ),
    )
    result.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every workload's size (default 1: 2M lines, 2 GiB, ...; "
        "0.01 for a quick run)",
    )
    result.add_argument(
        "--rounds", type=int, default=5, help="rounds (median over them; default 5)"
    )
    result.add_argument(
        "--workloads",
        metavar="NAMES",
        help="comma-separated names or glob patterns "
        f"({', '.join(workloads.workload_names())})",
    )
    result.add_argument(
        "--contenders",
        metavar="NAMES",
        help="comma-separated names or glob patterns, e.g. 'portastreams/*,*/trio' "
        f"({', '.join(contenders.contender_names())})",
    )
    result.add_argument("--json", type=Path, metavar="PATH", help="write all results")
    result.add_argument(
        "--plot", type=Path, metavar="PATH", help="bar chart of the ratios (PNG)"
    )
    result.add_argument(
        "--rst", type=Path, metavar="PATH", help="write a reStructuredText results page"
    )
    result.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="CPU that client and peer share in the latency workloads "
        "(default: the last usable CPU)",
    )
    result.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the latency workloads (pingpong, fanin) to one CPU",
    )
    result.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one measurement may take (default 900)",
    )
    result.add_argument(
        "--seed", type=int, default=0, help="seed of the contender order shuffle"
    )
    result.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="instead of benchmarking, run each selected workload x contender once "
        "under cProfile, write DIR/<workload>-<contender>.prof and print the top "
        "functions",
    )
    result.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="do not run anything: print the table (and write --plot/--rst) from "
        "the results a previous run saved with --json",
    )
    result.add_argument(
        "--list", action="store_true", help="list workloads and contenders and exit"
    )
    return result


def list_choices(scale: float) -> None:
    print("Workloads:")
    for workload in workloads.WORKLOADS:
        size = workload.describe_size(workload.size(scale))
        pinned = " [pinned]" if workload.latency else ""
        print(f"  {workload.name:10} {size:32} {workload.description}{pinned}")
    print("Contenders:")
    for contender in contenders.CONTENDERS:
        print(f"  {contender.name:26} {contender.description}")


def profile(settings: runner.Settings, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    status = 0
    for workload in settings.workloads:
        size = workload.size(settings.scale)
        cpu = settings.pin_cpu if workload.latency else None
        with runner.Peer(workload, size, cpu) as peer:
            for contender in settings.contenders:
                name = f"{workload.name}-{contender.name.replace('/', '-')}"
                path = directory / f"{name}.prof"
                run = runner.measure(
                    workload,
                    contender,
                    peer,
                    size,
                    cpu,
                    settings.timeout,
                    profile=str(path),
                )
                print(f"\n=== {workload.name} {contender.name}: ", end="")
                if not run.verified:
                    print(f"FAILED: {run.error}")
                    status = 1
                    continue
                print(f"{run.seconds:.3f} s under cProfile -> {path}")
                stats = pstats.Stats(str(path))
                stats.sort_stats("tottime").print_stats(25)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    if args.list:
        list_choices(args.scale)
        return 0
    if args.scale <= 0 or args.rounds < 1:
        raise SystemExit("--scale must be > 0 and --rounds >= 1")
    pin_cpu = (
        None
        if args.no_pin
        else (args.cpu if args.cpu is not None else runner.latency_cpu())
    )
    settings = runner.Settings(
        scale=args.scale,
        rounds=args.rounds,
        workloads=_select(workloads.WORKLOADS, args.workloads, "workload"),
        contenders=_select(contenders.CONTENDERS, args.contenders, "contender"),
        pin_cpu=pin_cpu,
        timeout=args.timeout,
        seed=args.seed,
    )
    if args.from_json is not None:
        return rerender(args)
    if args.profile is not None:
        return profile(settings, args.profile)
    return benchmark(settings, arguments, args)


def rerender(args: argparse.Namespace) -> int:
    """The table, plot and page of a saved run (``--from-json``)."""
    from . import report

    meta, runs = report.read_json(args.from_json)
    settings = runner.Settings(
        scale=meta["scale"],
        rounds=meta["rounds"],
        workloads=[workloads.get(name) for name in meta["workloads"]],
        contenders=[contenders.get(name) for name in meta["contenders"]],
        pin_cpu=meta["pinned_cpu_for_latency_workloads"],
    )
    summaries = runner.summarize(runs)
    report.print_table(summaries, settings)
    if args.json is not None and args.json != args.from_json:
        report.write_json(args.json, meta, runs, summaries)
    return write_figures(args, meta, summaries, settings)


def write_figures(
    args: argparse.Namespace,
    meta: dict[str, Any],
    summaries: list[runner.Summary],
    settings: runner.Settings,
) -> int:
    """Write ``--plot`` and ``--rst``; 0, or 1 if the plot was asked for and failed."""
    from . import report

    plot_path: Path | None = None
    if args.plot is not None:
        if report.write_plot(args.plot, summaries, settings):
            plot_path = args.plot
        else:
            print("matplotlib is not installed: no plot", file=sys.stderr)
    if args.rst is not None:
        report.write_rst(args.rst, meta, summaries, plot_path)
    return 0


def benchmark(
    settings: runner.Settings, arguments: list[str], args: argparse.Namespace
) -> int:
    from . import report

    started = datetime.datetime.now(datetime.timezone.utc)
    total = settings.rounds * len(settings.workloads) * len(settings.contenders)
    with progress_reporter(total) as update:
        runs = runner.run_suite(settings, update)
    summaries = runner.summarize(runs)
    report.print_table(summaries, settings)
    meta = report.meta(settings, arguments, started)
    if args.json is not None:
        report.write_json(args.json, meta, runs, summaries)
    write_figures(args, meta, summaries, settings)
    failures = sum(not run.verified for run in runs)
    if failures:
        print(f"{failures} measurement(s) failed", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def progress_reporter(total: int) -> Iterator[runner.ProgressCallback]:
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

        def plain(label: str, run: runner.Run | None) -> None:
            nonlocal done
            if run is None:
                return
            done += 1
            outcome = f"{run.seconds:.3f} s" if run.verified else f"FAILED: {run.error}"
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

        def update(label: str, run: runner.Run | None) -> None:
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
