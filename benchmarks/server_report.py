"""Presenting the server results: cells, the rich table and its plain-text form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._text import aligned, ratio_style
from .serving import ServerSettings, ServerSummary

if TYPE_CHECKING:
    from rich.table import Table

COLUMNS = (
    "Workload",
    "Test",
    "Placement",
    "Contender",
    "Median req/s",
    "Min - max",
    "p50 / p99 ms",
    "Server CPU µs/req",
    "Idle KiB/conn",
    "vs native",
    "CPU vs native",
    "Memory vs native",
)
MEDIAN_COLUMN = COLUMNS.index("Median req/s")
RATIO_COLUMN = COLUMNS.index("vs native")
#: The columns (from the left) that hold names rather than figures.
NAME_COLUMNS = 4


def rate_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def range_text(summary: ServerSummary) -> str:
    if summary.minimum is None or summary.maximum is None:
        return "-"
    return f"{rate_text(summary.minimum)} - {rate_text(summary.maximum)}"


def latency_text(summary: ServerSummary) -> str:
    def one(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return f"{one(summary.p50_ms)} / {one(summary.p99_ms)}"


def number_text(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio_text(summary: ServerSummary) -> str:
    if summary.ratio is None:
        return "n/a"
    text = f"{summary.ratio:.2f}x"
    if summary.contender == summary.native:
        text += " (native)"
    return text


def factor_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def row(summary: ServerSummary) -> list[str]:
    return [
        summary.workload,
        summary.test,
        summary.placement,
        summary.contender,
        rate_text(summary.median),
        range_text(summary),
        latency_text(summary),
        number_text(summary.cpu_us_per_request),
        number_text(summary.idle_kib_per_connection),
        ratio_text(summary),
        factor_text(summary.cpu_ratio),
        factor_text(summary.memory_ratio),
    ]


def title(settings: ServerSettings) -> str:
    return (
        f"portastreams server benchmarks: scale {settings.scale:g}, "
        f"median of {settings.rounds} round(s)"
    )


CAPTION = (
    "vs native = contender median requests/s / native median (> 1: faster); "
    "CPU vs native = native server CPU per request / contender's (> 1: "
    "cheaper); Memory vs native = contender's idle KiB per connection / "
    "native's (< 1: leaner). Native: asyncio.start_server on asyncio and on "
    "uvloop, the hand-written trio.serve_tcp server on trio, per placement. "
    "Latencies are the load generator's."
)


def table(summaries: Sequence[ServerSummary], settings: ServerSettings) -> Table:
    """The server results as a rich table."""
    from rich.table import Table
    from rich.text import Text

    result = Table(title=title(settings), caption=CAPTION, caption_justify="left")
    for index, name in enumerate(COLUMNS):
        left = index < NAME_COLUMNS
        result.add_column(name, justify="left" if left else "right", no_wrap=True)
    previous = None
    for summary in summaries:
        group = (summary.workload, summary.test, summary.placement)
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


def plain_table(summaries: Sequence[ServerSummary], settings: ServerSettings) -> str:
    """The server results as plain text (when rich is not installed)."""
    rows = [list(COLUMNS)]
    for summary in summaries:
        cells = row(summary)
        if not summary.verified:
            cells[MEDIAN_COLUMN] = f"FAILED {summary.verified_runs}/{summary.runs}"
        rows.append(cells)
    return "\n".join(
        [title(settings), "", *aligned(rows, left=NAME_COLUMNS), "", CAPTION]
    )
