"""``python -m stress``: run the stress experiments and write the report.

Examples::

    python -m stress                                  # short profile, everything
    python -m stress --profile long                   # the long profile
    python -m stress --experiment load --load-connections 5000
    python -m stress --backend trio --experiment fd_exhaustion --no-controls

Exit status 1 if any experiment failed on portastreams (the controls'
figures are reported, never judged).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import report
from .experiments import EXPERIMENTS
from .experiments.common import Certificates
from .processes import ProcessFailed
from .profiles import PROFILES, Profile
from .results import CONTROL, SUBJECT, Row, Target


@dataclasses.dataclass
class Run:
    """What every experiment of one run shares."""

    profile: Profile
    certificates: Certificates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stress",
        description="Stress, fault, hostile-input and soak experiments against "
        "portastreams servers, with asyncio's own server as the control.",
    )
    parser.add_argument("--profile", choices=list(PROFILES), default="short")
    parser.add_argument(
        "--experiment",
        action="append",
        choices=list(EXPERIMENTS),
        help="run only this experiment (repeatable; default: all)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=["asyncio", "uvloop", "trio"],
        help="portastreams on this backend only (repeatable; default: all three)",
    )
    parser.add_argument(
        "--controls",
        default=None,
        help="backends for the backend's own server (asyncio's start_server; on "
        "trio a hand-written one), comma-separated, or 'none' (default: asyncio "
        "for the short profile, asyncio,uvloop,trio for the long one)",
    )
    parser.add_argument(
        "--no-controls", action="store_const", const="none", dest="controls"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--load-connections", type=int, help="override the load experiment's N"
    )
    parser.add_argument(
        "--soak-seconds", type=float, help="override the soak's duration"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("stress-results"), help="report directory"
    )
    parser.add_argument("--list", action="store_true", help="list the experiments")
    return parser


#: The experiments whose figures are compared with a control: the hand-written
#: trio server runs these (it has no close_clients(), handshake timeout, ...).
TRIO_CONTROLLED = frozenset({"load", "no_separator", "slowloris"})


def run_one(name: str, target: Target, rows: list[Row], run: Run) -> Row:
    """Run one experiment on one server; its row is appended to ``rows``."""
    experiment = EXPERIMENTS[name]
    started = time.monotonic()
    if target.is_control and target.backend == "trio" and name not in TRIO_CONTROLLED:
        row = Row(name, target)
        row.not_applicable = "the trio control serves the measured experiments only"
        rows.append(row)
        return row
    try:
        row = experiment.run(target, run.profile, run.certificates)
    except ProcessFailed as exc:
        row = Row(name, target)
        row.fail(f"the experiment could not finish: {exc}")
    row.figures.setdefault("experiment_seconds", round(time.monotonic() - started, 1))
    rows.append(row)
    status = "FAILED" if row.failures else "ok"
    print(
        f"  {target.label}: {status} ({time.monotonic() - started:.1f} s)", flush=True
    )
    for failure in row.failures:
        print(f"    - {failure}", flush=True)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, experiment in EXPERIMENTS.items():
            print(f"{name:16} {experiment.group:11} {experiment.title}")
        return 0
    profile = PROFILES[args.profile].with_seed(args.seed)
    overrides = {}
    if args.load_connections:
        overrides["load_connections"] = args.load_connections
    if args.soak_seconds:
        overrides["soak_seconds"] = args.soak_seconds
    profile = dataclasses.replace(profile, **overrides)
    controls = args.controls or (
        "asyncio" if profile.name == "short" else "asyncio,uvloop,trio"
    )
    targets = [
        Target(SUBJECT, b) for b in args.backend or ("asyncio", "uvloop", "trio")
    ]
    if controls != "none":
        targets += [Target(CONTROL, b) for b in controls.split(",")]
    names = args.experiment or list(EXPERIMENTS)
    rows: list[Row] = []
    env = report.environment()
    print(f"stress: profile {profile.name}, seed {profile.seed}, {env}", flush=True)
    with contextlib.ExitStack() as stack:
        run = Run(profile, stack.enter_context(Certificates.create()))
        for name in names:
            print(f"{name}: {EXPERIMENTS[name].title}", flush=True)
            selected = [run_one(name, target, rows, run) for target in targets]
            print(report.table(EXPERIMENTS[name], selected), flush=True)
    json_path, markdown_path = report.write(args.report, profile, rows, env)
    print(f"report: {markdown_path} and {json_path}")
    failed = [row for row in rows if row.failures and not row.target.is_control]
    print(
        f"{len(failed)} of {len([r for r in rows if not r.target.is_control])} "
        "portastreams runs failed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
