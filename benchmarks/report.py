"""Presenting results: machine facts, the rich table, JSON, the plot and the rst page."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import contenders, workloads
from .runner import ROOT, Run, Settings, Summary, as_json

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

PIN_NOTE = (
    "pingpong and fanin pin the client and the peer to the same CPU "
    "(os.sched_setaffinity): with the two on different cores every round trip "
    "pays two cross-core wake-ups, which on a small machine costs more than "
    "the stream implementation and hides every difference. The throughput "
    "workloads are not pinned."
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
        "git_commit": _git("rev-parse", "HEAD"),
        "portastreams_modified": bool(dirty) if dirty is not None else None,
    }


def command_line(argv: Sequence[str]) -> str:
    return " ".join(["python -m benchmarks", *argv])


def meta(
    settings: Settings, argv: Sequence[str], started: datetime.datetime
) -> dict[str, Any]:
    return {
        "command": command_line(argv),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "load_average_at_end": list(os.getloadavg()),
        "scale": settings.scale,
        "rounds": settings.rounds,
        "pinned_cpu_for_latency_workloads": settings.pin_cpu,
        "pin_note": PIN_NOTE,
        "ratio": "native median / contender median (> 1: faster than native)",
        "native": contenders.NATIVE,
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


def _ratio_style(summary: Summary) -> str:
    if summary.ratio is None:
        return "dim"
    if summary.ratio >= 1.05:
        return "green"
    if summary.ratio <= 0.95:
        return "red"
    return ""


COLUMNS = (
    "Workload",
    "Contender",
    "Median",
    "Min - max",
    "Rate",
    "Client CPU",
    "vs native",
    "CPU vs native",
    "Peak RSS MiB (+workload)",
)


def row(summary: Summary) -> list[str]:
    return [
        summary.workload,
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
        f"portastreams benchmarks: scale {settings.scale:g}, "
        f"median of {settings.rounds} round(s)"
    )


def _caption(settings: Settings) -> str:
    caption = (
        "vs native = native median / contender median (> 1: faster than native); "
        "CPU vs native: the same with client CPU time. "
        "Native: asyncio streams on asyncio and on uvloop; on trio the faster of "
        "anyio-buffered/trio and trio-buffer/trio. "
    )
    if settings.pin_cpu is not None:
        caption += (
            f"pingpong and fanin: client and peer pinned to CPU {settings.pin_cpu}."
        )
    else:
        caption += "Nothing pinned (--no-pin)."
    return caption


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
        if previous is not None and summary.workload != previous:
            result.add_section()
        previous = summary.workload
        cells: list[str | Text] = list(row(summary))
        cells[6] = Text(cells[6], style=_ratio_style(summary))  # type: ignore[arg-type]
        if not summary.verified:
            cells[2] = Text(
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
            cells[2] = f"FAILED {summary.verified_runs}/{summary.runs}"
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [_title(settings), ""]
    for cells in rows:
        lines.append(
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
        )
    lines += ["", _caption(settings)]
    return "\n".join(lines)


def print_table(summaries: Sequence[Summary], settings: Settings) -> None:
    try:
        from rich.console import Console
    except ImportError:
        print(plain_table(summaries, settings))
        for summary in summaries:
            for error in summary.errors:
                print(f"{summary.workload} {summary.contender}: {error}")
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table(summaries, settings))
    for summary in summaries:
        for error in summary.errors:
            console.print(
                f"[red]{summary.workload} {summary.contender}:[/red] {error}",
                markup=True,
                highlight=False,
            )


# -- files -------------------------------------------------------------------


def write_json(
    path: Path,
    meta_data: dict[str, Any],
    runs: Sequence[Run],
    summaries: Sequence[Summary],
) -> None:
    data = {
        "meta": meta_data,
        "summary": [as_json(s) for s in summaries],
        "runs": [as_json(r) for r in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> tuple[dict[str, Any], list[Run]]:
    """The ``meta`` and the runs of a file written by :func:`write_json`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    fields = {f.name for f in dataclasses.fields(Run)}
    runs = [Run(**{k: v for k, v in r.items() if k in fields}) for r in data["runs"]]
    return data["meta"], runs


def write_plot(path: Path, summaries: Sequence[Summary], settings: Settings) -> bool:
    """A bar chart of the ratios, one panel per backend. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    backends = [
        b for b in contenders.BACKENDS if any(s.backend == b for s in summaries)
    ]
    names = [w.name for w in settings.workloads]
    figure, axes = plt.subplots(
        1, len(backends), figsize=(5.2 * len(backends), 4.6), squeeze=False
    )
    for axis, backend in zip(axes[0], backends, strict=True):
        mine = [c.name for c in settings.contenders if c.backend == backend]
        width = 0.8 / max(1, len(mine))
        for index, name in enumerate(mine):
            values = []
            for workload in names:
                found = [
                    s.ratio
                    for s in summaries
                    if s.workload == workload and s.contender == name
                ]
                values.append(found[0] if found and found[0] is not None else 0.0)
            positions = [
                i + (index - (len(mine) - 1) / 2) * width for i in range(len(names))
            ]
            library = name.split("/")[0]
            bars = axis.bar(
                positions, values, width, label=library, color=COLOURS.get(library)
            )
            axis.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
        axis.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        axis.set_title(backend)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axis.set_ylabel("native time / contender time (> 1: faster)")
        top = max((s.ratio or 0.0) for s in summaries if s.backend == backend)
        axis.set_ylim(0, max(1.3, top * 1.25))
    figure.suptitle(
        f"portastreams benchmarks (scale {settings.scale:g}, "
        f"median of {settings.rounds}): speed relative to the backend's native streams",
        fontsize=10,
    )
    handles: dict[str, Any] = {}
    for axis in axes[0]:
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
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return True


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
Client-side stream APIs measured against a peer process that uses plain
blocking stdlib sockets on loopback, the same peer for every contender. Every
measurement runs in a fresh client process; within a round the contenders of
a workload run one after the other, in shuffled order, against one peer
process. A measurement is timed from before the connect to the verified end
of the workload (the close included).

The tables give the median wall time over the rounds, the fastest and slowest
round, the client process's CPU time (user + system), and the speed relative
to the backend's *native* streams: **native median / contender median**, so
above 1 is faster than native. Native is asyncio's own streams on asyncio and
on uvloop; on trio, whichever of AnyIO's ``BufferedByteStream`` and a
hand-written ``bytearray`` buffer over ``trio.SocketStream`` is faster for
that workload. *CPU vs native* is the same ratio from client CPU time, which
a busy machine disturbs less than wall time. Peak RSS is the client process's
peak resident set size (``VmHWM``; on Linux ``getrusage().ru_maxrss``
survives ``execve`` and would report the runner's own peak), and in
parentheses how much the workload added to it.

Every measurement is verified: the peer sends a deterministic pattern and the
client checks every byte it receives (items are compared in 64 KiB batches,
bulk chunks with ``bytes.startswith`` at their offset), and counts them; for
the upload the peer checks every 1 MiB block and reports the byte count and a
checksum. A fast wrong run fails.
"""

NOTES = (
    "AnyIO's ``BufferedByteStream.receive_exactly(n)`` asks the stream for "
    "only the bytes it is missing (``receive(n - buffered)``), so once its "
    "buffer runs dry every 4-byte header and every 60-byte payload is a "
    "receive call of its own, a system call and a pass through the event "
    "loop: that, not the buffer, is its *frames* figure.",
    "The hand-written trio buffer returns ``bytearray`` slices; asyncio's "
    "API (and so portastreams) returns ``bytes``, which costs one more copy "
    "per item in *lines* and *frames*.",
    "Medians of a few rounds on a machine shared with other work: look at "
    "the spread between the fastest and the slowest round before reading "
    "much into differences of a few per cent.",
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


def write_rst(
    path: Path,
    meta_data: dict[str, Any],
    summaries: Sequence[Summary],
    plot: Path | None,
) -> None:
    """A results page: method, workloads, contenders, plot, tables, machine."""
    machine = meta_data["machine"]
    versions = machine["versions"]
    out = ["Benchmarks", "==========", ""]
    out += _paragraphs(INTRODUCTION)
    out += [".. note::", ""]
    out += _paragraphs(PIN_NOTE, indent="   ")
    out += ["Workloads", "---------", ""]
    for name, info in meta_data["workloads"].items():
        out += _bullet(f"``{name}``: {info['description']}; {info['size_text']}.")
    out += ["", "Contenders", "----------", ""]
    for name, description in meta_data["contenders"].items():
        out += _bullet(f"``{name}``: {description}.")
    out += ["", "Notes:", ""]
    for note in NOTES:
        out += _bullet(note)
    out += ["", "Results", "-------", ""]
    out += _paragraphs(
        f"Scale {meta_data['scale']:g} (the sizes above), median of "
        f"{meta_data['rounds']} rounds, run from {meta_data['started']} to "
        f"{meta_data['finished']}."
    )
    if plot is not None:
        relative = Path(os.path.relpath(plot, path.parent)).as_posix()
        out += [
            f".. image:: {relative}",
            "   :alt: Speed relative to the native streams, per backend and workload",
            "",
        ]
    headers = [c for c in COLUMNS if c != "Workload"]
    for name in meta_data["workloads"]:
        mine = [s for s in summaries if s.workload == name]
        if not mine:
            continue
        out += [f"**{name}** ({meta_data['workloads'][name]['size_text']})", ""]
        rows = []
        for summary in mine:
            cells = row(summary)[1:]
            if not summary.verified:
                cells[1] = f"FAILED {summary.verified_runs}/{summary.runs}"
            rows.append(cells)
        out += _rst_table(headers, rows)
        out.append("")
    load = " ".join(f"{x:.2f}" for x in meta_data["load_average_at_end"])
    commit = f"{machine['git_commit']}"
    if machine["portastreams_modified"]:
        commit += " with local modifications"
    out += [
        "Machine and command",
        "-------------------",
        "",
        f"* CPU: {machine['cpu_model']}, nproc {machine['nproc']}",
        f"* {machine['platform']}",
        f"* Python {machine['python']} ({machine['python_implementation']})",
        "* "
        + ", ".join(f"{package} {version}" for package, version in versions.items()),
        f"* portastreams commit {commit}",
        f"* load average (1, 5, 15 min) at the end of the run: {load}",
        "",
        "Command::",
        "",
        f"   {meta_data['command']}",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
