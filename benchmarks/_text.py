"""Small text helpers shared by the client and the server tables."""

from __future__ import annotations

from collections.abc import Sequence


def ratio_style(ratio: float | None) -> str:
    """The rich style of a ratio: green from 1.05, red up to 0.95."""
    if ratio is None:
        return "dim"
    if ratio >= 1.05:
        return "green"
    if ratio <= 0.95:
        return "red"
    return ""


def aligned(rows: Sequence[Sequence[str]], left: int) -> list[str]:
    """Rows of cells as text columns, the first ``left`` left-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in rows
    ]
