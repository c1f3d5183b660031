"""Presenting results: machine facts, the rich table, JSON, the plot and the rst page."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from . import contenders, loadgen, placements, server_report, serving, workloads
from ._text import aligned, ratio_style
from .runner import ROOT, Run, Settings, Summary, as_json
from .serving import ServerRun, ServerSettings, ServerSummary

if TYPE_CHECKING:
    from rich.table import Table

PACKAGES = ("portastreams", "anyio", "trio", "uvloop")

#: One colour per library, the same in every panel of the plot.
COLOURS = {
    "portastreams": "tab:blue",
    "asyncio-streams": "tab:orange",
    "anyio-buffered": "tab:green",
    "trio-buffer": "tab:red",
}

PLACEMENT_NOTE = (
    "Every measurement has two processes on loopback: the client and its "
    "peer, or the server and its load generator, and where they run changes "
    "the figures. *shared*: both pinned to one CPU (hand-overs need no "
    "cross-core wake-up, but the two share the CPU); *split*: each pinned to "
    "a CPU of its own (the peer or server on one, the client or load "
    "generator on the other: a cross-core wake-up per message); *unpinned*: "
    "the scheduler decides. Ratios are taken within one placement; a result "
    "that holds in only one placement is not a result."
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()


def tool_version(program: str) -> str | None:
    """The first line a load generator prints about its version, if it is installed."""
    path = loadgen.TOOLS[program].path()
    if path is None:
        return None
    flag = "--version" if program == "redis-benchmark" else "-v"
    try:
        completed = subprocess.run(
            [path, flag], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    # wrk: "wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer"
    return lines[0].split(" Copyright")[0].strip() if lines else None


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    dirty = _git("status", "--porcelain", "--", "portastreams")
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": (
            sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None
        ),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": versions,
        "tools": {program: tool_version(program) for program in loadgen.TOOLS},
        "git_commit": _git("rev-parse", "HEAD"),
        "portastreams_modified": bool(dirty) if dirty is not None else None,
    }


#: Options that only say where results are written: left out of the command a
#: page shows (their paths are the writer's, not the measurement's).
OUTPUT_OPTIONS: Final = ("--json", "--plot", "--rst", "--profile")


def command_line(argv: Sequence[str], program: str = "python -m benchmarks") -> str:
    """The command that measured, without its output options."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OUTPUT_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(option + "=" for option in OUTPUT_OPTIONS)):
            shown.append(arg)
    return " ".join([program, *shown])


def meta(
    settings: Settings,
    server_settings: ServerSettings,
    skipped: dict[str, str],
    argv: Sequence[str],
    started: datetime.datetime,
    load_at_start: Sequence[float],
) -> dict[str, Any]:
    return {
        "command": command_line(argv),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "load_average_at_start": list(load_at_start),
        "load_average_at_end": list(os.getloadavg()),
        "scale": settings.scale,
        "rounds": settings.rounds,
        "cpus": list(settings.cpus) if settings.cpus is not None else None,
        "placements": {
            p.name: {
                "description": p.description,
                "cpus": p.cpus(settings.cpus),
            }
            for p in placements.PLACEMENTS
        },
        "client_placements": [p.name for p, _ in settings.usable_placements()],
        "server_placements": [
            p.name
            for p, _ in placements.resolve(
                server_settings.placements, server_settings.cpus
            )
        ],
        "placement_note": PLACEMENT_NOTE,
        "ratio": "native median / contender median (> 1: faster than native)",
        "server_ratio": "contender median requests/s / native median (> 1: faster)",
        "native": contenders.NATIVE,
        "server_native": contenders.SERVER_NATIVE,
        "workloads": {
            w.name: {
                "description": w.description,
                "size": w.size(settings.scale),
                "size_text": w.describe_size(w.size(settings.scale)),
                "latency": w.latency,
            }
            for w in settings.workloads
        },
        "contenders": {c.name: c.description for c in settings.contenders},
        "server_workloads": {
            w.name: {
                "description": w.description,
                "tool": w.tool,
                "tests": list(w.tests),
                "pipeline": w.pipeline,
                "connections": w.connections,
                "size": w.size(server_settings.scale),
                "size_text": w.describe_size(w.size(server_settings.scale)),
            }
            for w in server_settings.workloads
        },
        "server_contenders": {
            c.name: c.description for c in server_settings.contenders
        },
        "idle_connections": server_settings.idle_connections,
        "skipped_workloads": dict(skipped),
        "machine": machine_info(),
    }


# -- formatting --------------------------------------------------------------


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def range_text(summary: Summary) -> str:
    if summary.minimum is None or summary.maximum is None:
        return "-"
    return f"{seconds_text(summary.minimum)} - {seconds_text(summary.maximum)}"


def rate_text(summary: Summary) -> str:
    if not summary.median:
        return "-"
    workload = workloads.get(summary.workload)
    if workload.name in ("bulk", "upload"):
        gib = workload.payload_bytes(summary.size) / 2**30
        return f"{gib / summary.median:.2f} GiB/s"
    count = summary.size
    unit = workload.unit
    if workload.name == "fanin":
        count *= workloads.FANIN_CONNECTIONS
        unit = "round trips"
    per_second = count / summary.median
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M {unit}/s"
    return f"{per_second / 1e3:.1f} k {unit}/s"


def ratio_text(summary: Summary) -> str:
    if summary.ratio is None:
        return "n/a"
    text = f"{summary.ratio:.2f}x"
    if summary.contender == summary.native:
        text += " (native)"
    return text


def cpu_ratio_text(summary: Summary) -> str:
    if summary.cpu_ratio is None:
        return "n/a"
    return f"{summary.cpu_ratio:.2f}x"


def rss_text(summary: Summary) -> str:
    if summary.peak_rss_kib is None:
        return "-"
    text = f"{summary.peak_rss_kib / 1024:.1f}"
    if summary.rss_growth_kib is not None:
        text += f" (+{summary.rss_growth_kib / 1024:.1f})"
    return text


COLUMNS = (
    "Workload",
    "Placement",
    "Contender",
    "Median",
    "Min - max",
    "Rate",
    "Client CPU",
    "vs native",
    "CPU vs native",
    "Peak RSS MiB (+workload)",
)
MEDIAN_COLUMN = COLUMNS.index("Median")
RATIO_COLUMN = COLUMNS.index("vs native")


def row(summary: Summary) -> list[str]:
    return [
        summary.workload,
        summary.placement,
        summary.contender,
        seconds_text(summary.median),
        range_text(summary),
        rate_text(summary),
        seconds_text(summary.cpu_median),
        ratio_text(summary),
        cpu_ratio_text(summary),
        rss_text(summary),
    ]


def _title(settings: Settings) -> str:
    return (
        f"portastreams client benchmarks: scale {settings.scale:g}, "
        f"median of {settings.rounds} round(s)"
    )


def _caption(settings: Settings) -> str:
    caption = (
        "vs native = native median / contender median (> 1: faster than native); "
        "CPU vs native: the same with client CPU time. "
        "Native: asyncio streams on asyncio and on uvloop; on trio the faster of "
        "anyio-buffered/trio and trio-buffer/trio, per placement. "
    )
    return caption + placement_caption(settings.cpus)


def placement_caption(cpus: tuple[int, int] | Sequence[int] | None) -> str:
    if cpus is None:
        return "Nothing pinned (this platform cannot pin processes)."
    first, second = cpus
    return (
        f"Placements: shared = both on CPU {second}; split = peer/server on CPU "
        f"{first}, client/load generator on CPU {second}; unpinned = scheduler."
    )


def table(summaries: Sequence[Summary], settings: Settings) -> Table:
    """The results as a rich table."""
    from rich.table import Table
    from rich.text import Text

    result = Table(
        title=_title(settings), caption=_caption(settings), caption_justify="left"
    )
    for name in COLUMNS:
        left = name in ("Workload", "Contender")
        result.add_column(name, justify="left" if left else "right", no_wrap=True)
    previous = None
    for summary in summaries:
        group = (summary.workload, summary.placement)
        if previous is not None and group != previous:
            result.add_section()
        previous = group
        cells: list[str | Text] = list(row(summary))
        cells[RATIO_COLUMN] = Text(
            ratio_text(summary), style=ratio_style(summary.ratio)
        )
        if not summary.verified:
            cells[MEDIAN_COLUMN] = Text(
                f"FAILED {summary.verified_runs}/{summary.runs}", "bold red"
            )
        result.add_row(*cells)
    return result


def plain_table(summaries: Sequence[Summary], settings: Settings) -> str:
    """The results as plain text (when rich is not installed)."""
    rows = [list(COLUMNS)]
    for summary in summaries:
        cells = row(summary)
        if not summary.verified:
            cells[MEDIAN_COLUMN] = f"FAILED {summary.verified_runs}/{summary.runs}"
        rows.append(cells)
    return "\n".join(
        [_title(settings), "", *aligned(rows, left=3), "", _caption(settings)]
    )


def print_tables(results: Results) -> None:
    """The client table and the server table on stdout (rich if installed)."""
    settings, server_settings = results.settings, results.server_settings
    try:
        from rich.console import Console
    except ImportError:
        if results.summaries:
            print(plain_table(results.summaries, settings))
        if results.server_summaries:
            print(server_report.plain_table(results.server_summaries, server_settings))
        for label, error in results.errors():
            print(f"{label}: {error}")
        print_ratio_matrix(results)
        return
    console = Console(width=None if sys.stdout.isatty() else 240)
    if results.summaries:
        console.print(table(results.summaries, settings))
    if results.server_summaries:
        console.print(server_report.table(results.server_summaries, server_settings))
    for label, error in results.errors():
        console.print(f"[red]{label}:[/red] {error}", markup=True, highlight=False)
    print_ratio_matrix(results)


# -- the summary of ratios ---------------------------------------------------

#: The library whose ratios the summary shows.
SUBJECT = "portastreams"


def ratio_matrix(results: Results) -> tuple[list[str], list[list[str]]]:
    """portastreams' ratio to native for every workload, placement and backend.

    ``(headers, rows)``: a row per client workload and per server test, a
    column per placement x backend; ``-`` where nothing was measured.
    """
    used = {
        *results.meta.get("client_placements", []),
        *results.meta.get("server_placements", []),
    }
    order = [p.name for p in placements.PLACEMENTS if p.name in used]
    columns = [(p, b) for p in order for b in contenders.BACKENDS]
    found: dict[tuple[str, str, str], float | None] = {}
    for s in results.summaries:
        if s.contender.split("/")[0] == SUBJECT:
            found[s.workload, s.placement, s.backend] = s.ratio
    for r in results.server_summaries:
        if r.contender.split("/")[0] == SUBJECT:
            found[f"{r.workload} {r.test}", r.placement, r.backend] = r.ratio
    names = [w.name for w in results.settings.workloads] + [
        f"{w.name} {t}" for w in results.server_settings.workloads for t in w.tests
    ]
    rows = []
    for name in names:
        cells = [name]
        for placement, backend in columns:
            ratio = found.get((name, placement, backend))
            cells.append("-" if ratio is None else f"{ratio:.2f}")
        if any(cell != "-" for cell in cells[1:]):
            rows.append(cells)
    headers = ["Workload", *(f"{p} {b}" for p, b in columns)]
    return headers, rows


def print_ratio_matrix(results: Results) -> None:
    headers, rows = ratio_matrix(results)
    if not rows:
        return
    print()
    print(
        f"{SUBJECT} vs native (> 1: faster), per placement and backend "
        "(clients: time ratio; servers: requests/s ratio):"
    )
    for line in aligned([headers, *rows], left=1):
        print("  " + line)


# -- files -------------------------------------------------------------------


@dataclass
class Results:
    """Everything a run produced (or a saved run held)."""

    meta: dict[str, Any]
    settings: Settings
    server_settings: ServerSettings
    runs: list[Run] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    server_runs: list[ServerRun] = field(default_factory=list)
    server_summaries: list[ServerSummary] = field(default_factory=list)

    def errors(self) -> list[tuple[str, str]]:
        """``(what, error)`` of every failed measurement group."""
        found = [
            (f"{s.workload} {s.placement} {s.contender}", error)
            for s in self.summaries
            for error in s.errors
        ]
        found += [
            (f"{s.workload} {s.test} {s.placement} {s.contender}", error)
            for s in self.server_summaries
            for error in s.errors
        ]
        return found


def write_json(path: Path, results: Results) -> None:
    data = {
        "meta": results.meta,
        "summary": [as_json(s) for s in results.summaries],
        "runs": [as_json(r) for r in results.runs],
        "server_summary": [serving.as_json(s) for s in results.server_summaries],
        "server_runs": [serving.as_json(r) for r in results.server_runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> tuple[dict[str, Any], list[Run], list[ServerRun]]:
    """The ``meta``, the client runs and the server runs of a :func:`write_json` file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Run)}
    runs = [Run(**{k: v for k, v in r.items() if k in fields}) for r in data["runs"]]
    server_runs = [serving.run_from_json(r) for r in data.get("server_runs", [])]
    return data["meta"], runs, server_runs


# -- the plot ----------------------------------------------------------------


@dataclass
class _Panel:
    """One row of the plot: one kind of workload in one placement."""

    title: str
    groups: list[str]
    #: ``ratios[contender][group]``.
    ratios: dict[str, dict[str, float]]
    ylabel: str


def _panels(results: Results) -> list[_Panel]:
    panels = []
    client_groups = [w.name for w in results.settings.workloads]
    for placement in results.meta.get("client_placements", []):
        ratios: dict[str, dict[str, float]] = {}
        for s in results.summaries:
            if s.placement == placement and s.ratio is not None:
                ratios.setdefault(s.contender, {})[s.workload] = s.ratio
        if ratios:
            panels.append(
                _Panel(
                    f"clients, {placement}",
                    client_groups,
                    ratios,
                    "native time / contender time",
                )
            )
    server_groups = [
        f"{w.name} {t}" for w in results.server_settings.workloads for t in w.tests
    ]
    for placement in results.meta.get("server_placements", []):
        ratios = {}
        for r in results.server_summaries:
            if r.placement == placement and r.ratio is not None:
                ratios.setdefault(r.contender, {})[f"{r.workload} {r.test}"] = r.ratio
        if ratios:
            panels.append(
                _Panel(
                    f"servers, {placement}",
                    server_groups,
                    ratios,
                    "contender req/s / native req/s",
                )
            )
    return panels


def write_plot(path: Path, results: Results) -> bool:
    """Bar charts of the ratios: a row per kind x placement, a column per backend.

    False without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = _panels(results)
    if not panels:
        return True
    backend_of = {
        c.name: c.backend
        for c in (*contenders.CONTENDERS, *contenders.SERVER_CONTENDERS)
    }
    order = [
        c.name
        for c in (*results.settings.contenders, *results.server_settings.contenders)
    ]
    backends = [
        b
        for b in contenders.BACKENDS
        if any(backend_of[n] == b for panel in panels for n in panel.ratios)
    ]
    figure, axes = plt.subplots(
        len(panels),
        len(backends),
        figsize=(5.6 * len(backends), 3.9 * len(panels)),
        squeeze=False,
    )
    for row_axes, panel in zip(axes, panels, strict=True):
        for axis, backend in zip(row_axes, backends, strict=True):
            mine = [
                n
                for n in dict.fromkeys(order)
                if n in panel.ratios and backend_of[n] == backend
            ]
            width = 0.8 / max(1, len(mine))
            top = 1.0
            for index, name in enumerate(mine):
                values = [panel.ratios[name].get(g, 0.0) for g in panel.groups]
                top = max(top, *values)
                positions = [
                    i + (index - (len(mine) - 1) / 2) * width
                    for i in range(len(panel.groups))
                ]
                library = name.split("/")[0]
                bars = axis.bar(
                    positions, values, width, label=library, color=COLOURS.get(library)
                )
                axis.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
            axis.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
            axis.set_title(f"{panel.title}: {backend}", fontsize=9)
            axis.set_xticks(
                range(len(panel.groups)),
                panel.groups,
                rotation=35,
                ha="right",
                fontsize=7,
            )
            axis.set_ylabel(f"{panel.ylabel}\n(> 1: faster)", fontsize=7)
            axis.set_ylim(0, max(1.3, top * 1.3))
    figure.suptitle(
        f"portastreams benchmarks (scale {results.settings.scale:g}, median of "
        f"{results.settings.rounds}): speed relative to the backend's native "
        "streams and servers",
        fontsize=10,
    )
    handles: dict[str, Any] = {}
    for row_axes in axes:
        for axis in row_axes:
            for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
    figure.legend(
        handles=list(handles.values()),
        labels=list(handles),
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )
    figure.tight_layout(rect=(0, 0.03, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


# -- the rst page -------------------------------------------------------------


def _rst_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
    ]
    for cells in [headers, *rows]:
        for i, cell in enumerate(cells):
            lines.append(f"   {'* -' if i == 0 else '  -'} {cell or ' '}")
    return lines


INTRODUCTION = """\
Every measurement runs in a fresh process, verifies what it measured (a fast
wrong run fails), and is compared with the *native* contender of the same
backend in the same placement and the same run: the contenders of a workload
run one after the other, in shuffled order, and the rounds interleave them, so
a busy moment of the machine hits every contender alike. The tables give the
median over the rounds and the fastest and slowest round: on a shared machine,
read the spread before reading much into a difference of a few per cent.

What a ratio owes to the code rather than to the machine is on
:doc:`instructions`: the machine instructions each contender executes per
line, frame, chunk, round trip or request, counted with callgrind, which
repeats where timings do not.
"""

CLIENT_INTRODUCTION = """\
Client-side stream APIs against a peer process that uses plain blocking stdlib
sockets on loopback, the same peer for every contender. A measurement is timed
from before the connect to the verified end of the workload (the close
included).

The tables give the median wall time, the client process's CPU time (user +
system), and the speed relative to the backend's native streams: **native
median / contender median**, so above 1 is faster than native. Native is
asyncio's own streams on asyncio and on uvloop; on trio, whichever of AnyIO's
``BufferedByteStream`` and a hand-written ``bytearray`` buffer over
``trio.SocketStream`` is faster for that workload and placement. *CPU vs
native* is the same ratio from client CPU time, which a busy machine disturbs
less than wall time. Peak RSS is the client process's peak resident set size
(``VmHWM``; on Linux ``getrusage().ru_maxrss`` survives ``execve`` and would
report the runner's own peak), and in parentheses how much the workload added
to it.

The peer sends a deterministic pattern and the client checks every byte it
receives (items are compared in 64 KiB batches, bulk chunks with
``bytes.startswith`` at their offset), and counts them; for the upload the
peer checks every 1 MiB block and reports the byte count and a checksum.
"""

SERVER_INTRODUCTION = """\
Servers under real load generators written in C, from the system package
manager: ``redis-benchmark`` (package ``redis-tools``) against a RESP server,
``wrk`` (package ``wrk``) against an HTTP/1.1 keep-alive server. Both
asyncio-API contenders run the very same handler function
(``benchmarks/_serve_streams_api.py``: ``readline`` + ``readexactly`` per
RESP command, ``readuntil(b"\\r\\n\\r\\n")`` + Content-Length per HTTP
request, one ``write`` + ``await drain()`` per reply); the trio baseline is
what a trio user writes by hand, ``trio.serve_tcp`` with a ``bytearray``
buffer and one ``send_all`` per reply. Every reply comes from the same code
(``benchmarks/protocols.py``).

Each server runs in a fresh process. Before the load, the harness checks every
reply the server may give (plain blocking sockets), then holds idle
connections open, each served once, and reads the server's ``VmRSS`` without
and with them: *Idle KiB/conn*. Each test then runs the load generator once;
the server's own request counters must show every request the tool got a
reply to, and no more than it sent (redis-benchmark sends whole pipelines; wrk
may leave one request in flight per connection), the tool must report no error, and after the RESP
tests ``GET key:__rand_int__`` must return what redis-benchmark's ``SET``
wrote. *Server CPU µs/req* is the server process's CPU time (user + system,
``getrusage``) during the test divided by the requests it served.

The tables give requests per second as the load generator measured them
(median, fastest and slowest round), its median latencies, and the ratios to
the backend's native server: **contender req/s / native req/s** (above 1 is
faster), *CPU vs native* (native CPU per request / contender's: above 1 is
cheaper) and *Memory vs native* (contender's idle KiB per connection /
native's: below 1 is leaner).
"""

NOTES = (
    "AnyIO's ``BufferedByteStream.receive_exactly(n)`` asks the stream for "
    "only the bytes it is missing (``receive(n - buffered)``), so once its "
    "buffer runs dry every 4-byte header and every 60-byte payload is a "
    "receive call of its own, a system call and a pass through the event "
    "loop: that, not the buffer, is its *frames* figure.",
    "The hand-written trio buffer returns ``bytearray`` slices of its "
    "buffer and skips consumed bytes with an offset. asyncio's API returns "
    "``bytes``: a reader whose reads receive themselves (portastreams on a "
    "trio socket) slices them out of the ``bytes`` chunk it received, one "
    "copy per item as in the hand-written buffer; a fed reader (asyncio's, "
    "and portastreams on asyncio) copies each item out of a ``bytearray`` "
    "and drops it from the front, one more allocation and copy and a "
    "``del`` per item.",
    "The *upload* workload is bound by the kernel's loopback TCP path and "
    "the peer more than by the stream implementation: a plain blocking "
    "``sendall`` loop without any event loop takes about as long as "
    "portastreams and AnyIO's streams do, and most of the client's CPU time "
    "is system time. It is bimodal: a run takes either about as long as the "
    "fast mode or two to three times as long, with two to three times the "
    "system time. ``trio.open_tcp_stream`` (the hand-written trio "
    "contender) sets ``TCP_NOTSENT_LOWAT`` (16 KiB), which AnyIO's socket "
    "streams and asyncio's do not, and the option keeps it in the fast "
    "mode: 7 rounds of it took 63-76 ms in each placement (scale 0.1), and "
    "62-189 ms with the option turned off again. portastreams does not set "
    "it: a ``send()`` would then refuse once 16 KiB is unsent, so ``drain()`` "
    "would wait on a peer that does not read much sooner than asyncio's "
    "(whose kernel buffer takes megabytes). So the trio upload ratio swings "
    "between about 0.3 and 1.2 between runs and placements: read its "
    "spread, not its median alone.",
)


def _paragraphs(text: str, indent: str = "") -> list[str]:
    lines: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        lines += textwrap.wrap(
            " ".join(paragraph.split()),
            width=78,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
        lines.append("")
    return lines


def _bullet(text: str) -> list[str]:
    return [
        *textwrap.wrap(
            " ".join(text.split()),
            width=78,
            initial_indent="* ",
            subsequent_indent="  ",
            break_on_hyphens=False,
        )
    ]


def _summary_table(summaries: Sequence[Summary]) -> list[str]:
    headers = [c for c in COLUMNS if c != "Workload"]
    rows = []
    for summary in summaries:
        cells = row(summary)[1:]
        if not summary.verified:
            cells[MEDIAN_COLUMN - 1] = f"FAILED {summary.verified_runs}/{summary.runs}"
        rows.append(cells)
    return _rst_table(headers, rows)


def _server_summary_table(summaries: Sequence[ServerSummary]) -> list[str]:
    """The rows of one workload test (its heading names the workload and test)."""
    skip = server_report.COLUMNS.index("Placement")
    headers = list(server_report.COLUMNS[skip:])
    rows = []
    for summary in summaries:
        cells = server_report.row(summary)
        if not summary.verified:
            cells[server_report.MEDIAN_COLUMN] = (
                f"FAILED {summary.verified_runs}/{summary.runs}"
            )
        rows.append(cells[skip:])
    return _rst_table(headers, rows)


def _section(title: str, underline: str) -> list[str]:
    return [title, underline * len(title), ""]


def write_rst(path: Path, results: Results, plot: Path | None) -> None:
    """A results page: method, workloads, contenders, plot, tables, machine."""
    meta_data = results.meta
    machine = meta_data["machine"]
    versions = machine["versions"]
    out = _section("Benchmarks", "=")
    out += _paragraphs(INTRODUCTION)
    out += [".. note::", ""]
    out += _paragraphs(PLACEMENT_NOTE, indent="   ")
    out += _paragraphs(
        f"Scale {meta_data['scale']:g}, median of {meta_data['rounds']} rounds, "
        f"run from {meta_data['started']} to {meta_data['finished']}. "
        + placement_caption(meta_data.get("cpus"))
    )
    headers, matrix = ratio_matrix(results)
    if matrix:
        out += _section("Summary", "-")
        out += _paragraphs(
            f"{SUBJECT} relative to the backend's native contender in each "
            "placement (above 1 is faster): for the clients the time ratio, for "
            "the servers the requests/s ratio. The tables below give every "
            "figure behind these ratios, the spread of the rounds included."
        )
        out += _rst_table(headers, matrix)
        out.append("")
    if plot is not None:
        relative = Path(os.path.relpath(plot, path.parent)).as_posix()
        out += [
            f".. image:: {relative}",
            "   :alt: Speed relative to the native contender, per placement, "
            "backend and workload",
            "",
        ]
    if results.summaries:
        out += _section("Clients", "-")
        out += _paragraphs(CLIENT_INTRODUCTION)
        out += _section("Client workloads", "~")
        for name, info in meta_data["workloads"].items():
            out += _bullet(f"``{name}``: {info['description']}; {info['size_text']}.")
        out += ["", *_section("Client contenders", "~")]
        for name, description in meta_data["contenders"].items():
            out += _bullet(f"``{name}``: {description}.")
        out += ["", "Notes:", ""]
        for note in NOTES:
            out += _bullet(note)
        out += ["", *_section("Client results", "~")]
        for name in meta_data["workloads"]:
            mine = [s for s in results.summaries if s.workload == name]
            if not mine:
                continue
            out += [f"**{name}** ({meta_data['workloads'][name]['size_text']})", ""]
            out += _summary_table(mine)
            out.append("")
    server_workloads = meta_data.get("server_workloads", {})
    skipped = meta_data.get("skipped_workloads", {})
    if results.server_summaries or skipped:
        out += _section("Servers", "-")
        out += _paragraphs(SERVER_INTRODUCTION)
        out += _section("Server workloads", "~")
        for name, info in server_workloads.items():
            tests = ", ".join(info["tests"])
            out += _bullet(
                f"``{name}``: {info['description']}; {info['tool']} "
                f"({tests}), {info['size_text']}."
            )
        for name, hint in skipped.items():
            out += _bullet(f"``{name}``: not run: {hint}.")
        out += ["", *_section("Server contenders", "~")]
        for name, description in meta_data.get("server_contenders", {}).items():
            out += _bullet(f"``{name}``: {description}.")
        out += [
            "",
            *_paragraphs(
                f"Idle KiB/conn: {meta_data.get('idle_connections')} idle "
                "connections per measurement."
            ),
        ]
        out += _section("Server results", "~")
        for name, info in server_workloads.items():
            for test in info["tests"]:
                tested = [
                    s
                    for s in results.server_summaries
                    if s.workload == name and s.test == test
                ]
                if not tested:
                    continue
                out += [f"**{name} {test}** ({info['size_text']})", ""]
                out += _server_summary_table(tested)
                out.append("")
    loads = [run.load_average for run in results.runs if run.load_average]
    loads += [run.load_average for run in results.server_runs if run.load_average]
    out += _machine_section(meta_data, machine, versions, loads)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")


def _machine_section(
    meta_data: dict[str, Any],
    machine: dict[str, Any],
    versions: dict[str, Any],
    loads: Sequence[float],
) -> list[str]:
    """Machine, versions, how busy the machine was (``loads``: per measurement), command."""

    def load(key: str) -> str:
        values = meta_data.get(key)
        return " ".join(f"{x:.2f}" for x in values) if values else "-"

    commit = f"{machine['git_commit']}"
    if machine["portastreams_modified"]:
        commit += " with local modifications"
    tools = machine.get("tools", {})
    tool_text = ", ".join(
        f"{version}" if version else f"{program} not installed"
        for program, version in tools.items()
    )
    return [
        *_section("Machine and command", "-"),
        f"* CPU: {machine['cpu_model']}, nproc {machine['nproc']}",
        f"* {machine['platform']}",
        f"* Python {machine['python']} ({machine['python_implementation']})",
        "* "
        + ", ".join(f"{package} {version}" for package, version in versions.items()),
        f"* load generators: {tool_text or '-'}",
        f"* portastreams commit {commit}",
        "* load average (1, 5, 15 min) at the start of the run: "
        + load("load_average_at_start"),
        "* load average (1, 5, 15 min) at the end of the run: "
        + load("load_average_at_end"),
        *(
            [
                "* 1-minute load average at the start of each measurement: "
                f"{min(loads):.2f} to {max(loads):.2f}, median "
                f"{statistics.median(loads):.2f}"
            ]
            if loads
            else []
        ),
        "",
        "Command::",
        "",
        f"   {meta_data['command']}",
        "",
    ]
