"""Tables (markdown, also printed) and the JSON report of a run."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .experiments import EXPERIMENTS, Experiment
from .profiles import Profile
from .results import Row

#: The order of the backends in tables, as everywhere in the project.
BACKEND_ORDER = ("asyncio", "uvloop", "trio")


def _control_for(row: Row, rows: Sequence[Row]) -> Row | None:
    """The control to compare ``row`` with: same backend if run, else asyncio's."""
    controls = {
        r.target.backend: r
        for r in rows
        if r.target.is_control and not r.not_applicable
    }
    return controls.get(row.target.backend) or controls.get("asyncio")


def _cell(experiment: Experiment, row: Row, rows: Sequence[Row], index: int) -> str:
    column = experiment.columns[index]
    value = row.figures.get(column.key)
    text = column.format(value) if value is not None else "-"
    if column.vs_control and not row.target.is_control and value is not None:
        control = _control_for(row, rows)
        reference = control.figures.get(column.key) if control else None
        if reference:
            text += f" ({value / reference:.2f}x)"
    return text


def _result(row: Row) -> str:
    if row.failures:
        return f"**FAILED** ({len(row.failures)})"
    if row.not_applicable:
        return f"n/a: {row.not_applicable}"
    return "ok"


def table(experiment: Experiment, rows: Sequence[Row]) -> str:
    """One experiment's rows as a markdown table, subjects first, then controls."""
    ordered = sorted(
        rows, key=lambda r: (r.target.is_control, BACKEND_ORDER.index(r.target.backend))
    )
    headers = ["server", *(c.header for c in experiment.columns), "result"]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in ordered:
        cells = [row.target.label]
        cells += [
            _cell(experiment, row, rows, i) for i in range(len(experiment.columns))
        ]
        cells.append(_result(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures(rows: Sequence[Row]) -> str:
    lines = []
    for row in rows:
        for failure in row.failures:
            kind = "control" if row.target.is_control else "FAILED"
            lines.append(f"- {kind}: {row.target.label}: {failure}")
    return "\n".join(lines)


def markdown(profile: Profile, rows: Sequence[Row], environment: dict[str, Any]) -> str:
    parts = [
        f"# Stress report: profile {profile.name}, seed {profile.seed}",
        "",
        "Figures of one run on one machine; ratios in parentheses are to "
        "asyncio's own server (the control) in the same run. "
        + ", ".join(f"{k}: {v}" for k, v in environment.items()),
    ]
    for name, experiment in EXPERIMENTS.items():
        selected = [r for r in rows if r.experiment == name]
        if not selected:
            continue
        parts += ["", f"## {name}: {experiment.title}", "", table(experiment, selected)]
        text = failures(selected)
        if text:
            parts += ["", text]
    return "\n".join(parts) + "\n"


def environment() -> dict[str, Any]:
    import anyio

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "anyio": getattr(anyio, "__version__", None) or _version("anyio"),
        "cpus": _cpus(),
        "platform": platform.platform(),
    }
    for module in ("trio", "uvloop"):
        info[module] = _version(module)
    return info


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpus() -> int | None:
    import os

    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def write(
    directory: Path, profile: Profile, rows: Sequence[Row], env: dict[str, Any]
) -> tuple[Path, Path]:
    """``stress-<profile>.json`` and ``stress-<profile>.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"stress-{profile.name}.json"
    markdown_path = directory / f"stress-{profile.name}.md"
    json_path.write_text(
        json.dumps(
            {
                "profile": profile.__dict__,
                "environment": env,
                "argv": sys.argv,
                "rows": [row.as_json() for row in rows],
            },
            indent=2,
            default=str,
        )
    )
    markdown_path.write_text(markdown(profile, rows, env))
    return json_path, markdown_path
