"""``python -m benchmarks.instructions``: the CPU work per item, counted.

On a shared two-core machine the timed suite's ratios move by up to 25 %
from one round to the next for code that did not change. The number of
machine instructions a process executes for one more item of work hardly
does: on an otherwise idle machine callgrind (valgrind's instruction counter)
repeats it to within a few per cent, most counts to within 0.5 % (how a
socket's bytes are split into receives depends on timing, and the work per
item a little with it). Run it alone: a client count taken while another
busy process shared the two cores came out 42 % low once (``lines`` on
asyncio: 3,437 instead of 5,963 a line), as one of its two runs paid for
extra event-loop wake-ups that the difference then subtracted.
It is not the time -- the kernel, cache misses and waiting are left out --
but it is the part of the time that a library's code decides, so it tells
whether a timed ratio below 1.0 is CPU work or noise, and it measures a
change to the hot path without the noise.

* **Clients** run twice under callgrind, against the timed suite's peer, at
  two sizes. The difference in instructions over the difference in size is
  what one more item costs (a line, a frame, a 64 KiB chunk, a round trip):
  start-up and imports cancel out.
* **Servers** run under callgrind while the load generator's test runs
  (redis-benchmark, wrk, as in the timed suite). Once the load has run for a
  while, the server's counters are zeroed (``callgrind_control --zero``);
  after a window of load they are dumped, and the instructions are divided by
  the requests the server counted in between. Connection setup is left out,
  as the timed suite spreads it over thousands of requests per connection.

Ratios are the native contender's count over the contender's (> 1: fewer
instructions than native); trio clients are compared with the fewer of
their two natives. Python's hash seed is fixed so that runs repeat.

Needs valgrind (``apt-get install valgrind``), and for the servers
redis-benchmark and wrk; the contenders' backends as in the timed suite.
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from . import contenders, loadgen, runner, serving, workloads
from ._check import Mismatch
from .contenders import Contender
from .runner import ROOT
from .workloads import ServerWorkload, Workload

#: The contenders counted unless ``--contenders`` says otherwise: all but
#: AnyIO's BufferedByteStream, whose ``frames`` alone would take longer than
#: everything else (its ``receive_exactly()`` receives only the bytes it
#: still needs, a receive per call: over 300,000 instructions a frame), and
#: which had more instructions than the other native wherever it was counted
#: (``lines``: 6,235 a line on trio, against 4,677 for the hand-written buffer).
DEFAULT_CONTENDERS: Final = "portastreams/*,asyncio-streams/*,trio-buffer/*"

#: The two sizes each client workload runs at (its ``unit``s).
CLIENT_SIZES: Final[dict[str, tuple[int, int]]] = {
    "lines": (20_000, 100_000),
    "frames": (20_000, 100_000),
    "bulk": (32 * 2**20, 160 * 2**20),
    "pingpong": (1_000, 5_000),
    "fanin": (20, 100),
    "upload": (500, 2_500),
}
#: The unit one count is per, for the table (``bulk`` counts per 64 KiB),
#: where it is not the workload's unit in the singular.
PER_UNIT: Final[dict[str, int]] = {"bulk": 65_536}
UNIT_NAMES: Final[dict[str, str]] = {"bulk": "64 KiB", "fanin": "round trip"}

#: Seconds of load before the server's counters are zeroed, and counted
#: (both multiplied by ``--scale``; the warm-up is at least the minimum).
WARMUP_SECONDS: Final = 3.0
MIN_WARMUP_SECONDS: Final = 0.5
WINDOW_SECONDS: Final = 10.0
#: More requests than a server under callgrind serves in a test's time.
UNBOUNDED_REQUESTS: Final = 100_000_000
#: How long a server under callgrind may take to start.
SERVER_START_TIMEOUT: Final = 300.0


@dataclass
class Count:
    """One contender's instructions per item of one workload (or server test)."""

    kind: str  # "client" or "server"
    workload: str  # "lines", "resp-p1 get", ...
    contender: str
    backend: str
    unit: str
    #: Instructions per unit; None if the run failed (see ``error``).
    per_unit: float | None = None
    #: Items the count is taken over.
    items: int = 0
    #: Native count / this count (> 1: fewer instructions than native).
    ratio: float | None = None
    error: str | None = None


# -- callgrind ------------------------------------------------------------------


def valgrind_missing() -> str | None:
    """What to install, if valgrind's callgrind tools are missing."""
    for program in ("valgrind", "callgrind_control"):
        if shutil.which(program) is None:
            return (
                f"{program!r} is not installed: install it with "
                "'apt-get install -y valgrind' (or your system's package manager)"
            )
    return None


def callgrind(out_file: Path) -> list[str]:
    """The command prefix that counts a process's instructions into ``out_file``."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]


def environment() -> dict[str, str]:
    """The suite's environment, with a fixed hash seed (so counts repeat)."""
    env = runner.child_environment()
    env["PYTHONHASHSEED"] = "0"
    return env


def total_instructions(out_file: Path) -> int:
    """The instructions a callgrind output file counts (its ``totals:`` line)."""
    for line in out_file.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise Mismatch(f"no totals in callgrind output {out_file}")


def _control(option: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", option, str(pid)],
        check=True,
        capture_output=True,
        timeout=60,
    )


# -- clients ---------------------------------------------------------------------


def _client_run(
    workload: Workload, contender: Contender, size: int, out_dir: Path
) -> int:
    """Instructions of one client process of ``size`` (verified as in the suite)."""
    out_file = out_dir / f"client-{size}.out"
    with runner.Peer(workload, size, None) as peer:
        command = [
            *callgrind(out_file),
            *runner.client_command(workload, contender, peer.port, size, None),
        ]
        completed = subprocess.run(
            command,
            capture_output=True,
            env=environment(),
            cwd=ROOT,
            timeout=1800,
            check=False,
        )
    lines = completed.stdout.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = {}
    if completed.returncode != 0 or not report.get("verified"):
        stderr = completed.stderr.decode(errors="replace")
        raise Mismatch(
            f"the client failed (exit code {completed.returncode}): "
            f"{report.get('error') or stderr[-1500:]}"
        )
    return total_instructions(out_file)


def count_client(
    workload: Workload, contender: Contender, sizes: tuple[int, int]
) -> Count:
    """Instructions per item of a client workload: two sizes, the difference."""
    divisor = PER_UNIT.get(workload.name, 1)
    unit = UNIT_NAMES.get(workload.name) or workload.unit.removesuffix("s")
    count = Count("client", workload.name, contender.name, contender.backend, unit)
    small, large = sizes
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = Path(tmp)
            first = _client_run(workload, contender, small, out_dir)
            second = _client_run(workload, contender, large, out_dir)
    except (Mismatch, subprocess.SubprocessError, OSError, RuntimeError) as exc:
        count.error = str(exc)
        return count
    items = (large - small) / divisor
    if workload.name == "fanin":
        items *= workloads.FANIN_CONNECTIONS
    count.items = round(items)
    count.per_unit = (second - first) / items
    return count


# -- servers ---------------------------------------------------------------------


def _newest_dump(out_file: Path) -> Path:
    dumps = sorted(
        out_file.parent.glob(out_file.name + ".*"), key=lambda p: p.stat().st_mtime
    )
    if not dumps:
        raise Mismatch("callgrind wrote no dump")
    return dumps[-1]


def _kind(workload: ServerWorkload, test: str) -> str:
    if workload.protocol == "resp":
        return serving.COUNTED_AS.get(test, "PING")
    return "HTTP"


def _tool_command(
    workload: ServerWorkload, program: str, port: int, test: str, seconds: float
) -> list[str]:
    """The test's load for longer than the harness needs (it is stopped after)."""
    if workload.tool == "redis-benchmark":
        return loadgen.redis_benchmark_command(
            program,
            port,
            test,
            UNBOUNDED_REQUESTS,
            workload.connections,
            workload.pipeline,
        )
    return loadgen.wrk_command(program, port, round(seconds) + 30, workload.connections)


def _count_test(
    workload: ServerWorkload,
    server: serving.ServerProcess,
    program: str,
    test: str,
    out_file: Path,
    window: float,
    warmup: float,
) -> tuple[int, int]:
    """(instructions, requests) of the server in a window of ``test``'s load."""
    kind = _kind(workload, test)
    command = _tool_command(workload, program, server.port, test, warmup + window)
    tool = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
    )
    try:
        time.sleep(warmup)
        _control("--zero", server.pid)
        before = server.stats()["counts"][kind]
        time.sleep(window)
        after = server.stats()["counts"][kind]
        _control("--dump", server.pid)
        if tool.poll() is not None:
            errors = tool.stderr.read().decode(errors="replace") if tool.stderr else ""
            raise Mismatch(f"{workload.tool} ended early: {errors[-1500:]}")
    finally:
        tool.terminate()
        tool.wait()
        if tool.stderr is not None:
            tool.stderr.close()
    # Let the server answer what the tool left behind before the next test.
    serving.settled_stats(server, kind, None)
    requests = after - before
    if requests <= 0:
        raise Mismatch(f"the server served no {kind} request in {window:g} s")
    return total_instructions(_newest_dump(out_file)), requests


def count_server(
    workload: ServerWorkload,
    contender: Contender,
    window: float = WINDOW_SECONDS,
    warmup: float = WARMUP_SECONDS,
) -> list[Count]:
    """Instructions per request of each of ``workload``'s tests, one server process."""
    names = [
        f"{workload.name} {test}" if len(workload.tests) > 1 else workload.name
        for test in workload.tests
    ]
    counts = [
        Count("server", name, contender.name, contender.backend, "request")
        for name in names
    ]
    generator = loadgen.TOOLS[workload.tool]
    program = generator.path()
    try:
        if program is None:
            raise Mismatch(generator.install_hint())
        with tempfile.TemporaryDirectory() as tmp:
            out_file = Path(tmp, "server.out")
            with serving.ServerProcess(
                workload.protocol,
                contender,
                None,
                wrapper=callgrind(out_file),
                env=environment(),
                start_timeout=SERVER_START_TIMEOUT,
            ) as server:
                for count, test in zip(counts, workload.tests, strict=True):
                    instructions, requests = _count_test(
                        workload, server, program, test, out_file, window, warmup
                    )
                    count.items = requests
                    count.per_unit = instructions / requests
    except (Mismatch, subprocess.SubprocessError, OSError, RuntimeError) as exc:
        for count in counts:
            if count.per_unit is None:
                count.error = str(exc)
    return counts


# -- ratios and the report ----------------------------------------------------------


def add_ratios(counts: Sequence[Count]) -> None:
    """Each count's ratio to the fewest instructions among its backend's natives."""
    for count in counts:
        natives = _natives(count)
        found = [
            other.per_unit
            for other in counts
            if other.kind == count.kind
            and other.workload == count.workload
            and other.contender in natives
            and other.per_unit
        ]
        if found and count.per_unit:
            count.ratio = min(found) / count.per_unit


def table(counts: Sequence[Count]) -> list[list[str]]:
    """Rows of the report: workload, contender, instructions per unit, ratio."""
    rows = [["workload", "contender", "instructions", "per", "ratio"]]
    for count in counts:
        if count.per_unit is None:
            rows.append([count.workload, count.contender, "failed", count.unit, "-"])
            continue
        ratio = "native" if count.contender in _natives(count) else "-"
        if count.ratio is not None and ratio != "native":
            ratio = f"{count.ratio:.2f}x"
        rows.append(
            [
                count.workload,
                count.contender,
                f"{count.per_unit:,.0f}",
                count.unit,
                ratio,
            ]
        )
    return rows


def _natives(count: Count) -> tuple[str, ...]:
    natives = contenders.NATIVE if count.kind == "client" else contenders.SERVER_NATIVE
    return natives[count.backend]


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in (2, 4) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


PAGE_INTRODUCTION = """\
The timed pages measure what users get; on a shared two-core machine their
ratios move by up to 25 % between rounds of code that did not change. This
page counts instead how many machine instructions each contender executes
per item of work, with valgrind's callgrind: on an otherwise idle machine
most counts repeat to within 0.5 %, all to within a few per cent (how a
socket's bytes are split into receives depends on timing). It leaves out the
kernel, cache misses and waiting, so it is not the time; it is the part of
the time that a library's code decides.

A client runs twice, at two sizes, against the timed suite's peer: the
difference in instructions over the difference in items is what one more
line, frame, 64 KiB chunk or round trip costs, start-up cancelled out. A
server runs under the timed suite's load generator; after a warm-up its
counters are zeroed, and after a window of load the instructions are divided
by the requests it served meanwhile (connection setup is left out, as the
timed suite spreads it over thousands of requests). *ratio* is the native
contender's count over the contender's: above 1, fewer instructions than
native; trio clients are compared with the fewer of their two natives.
"""


def write_rst(path: Path, counts: Sequence[Count], argv: Sequence[str]) -> None:
    """A results page: method, the client and server tables, machine, command."""
    from . import report  # (its plotting and rich imports stay lazy)

    machine = report.machine_info()
    out = ["Instructions per item", "=====================", ""]
    out += [*PAGE_INTRODUCTION.splitlines(), ""]
    for kind, title in (("client", "Clients"), ("server", "Servers")):
        rows = table([c for c in counts if c.kind == kind])
        if len(rows) == 1:
            continue
        out += [title, "-" * len(title), ""]
        out += [*report._rst_table(rows[0], rows[1:]), ""]
    versions = ", ".join(
        f"{package} {version}" for package, version in machine["versions"].items()
    )
    commit = str(machine["git_commit"])
    if machine["portastreams_modified"]:
        commit += " with local modifications"
    out += [
        "Machine and command",
        "-------------------",
        "",
        f"* CPU: {machine['cpu_model']}, nproc {machine['nproc']}",
        f"* {machine['platform']}",
        f"* Python {machine['python']} ({machine['python_implementation']})",
        f"* {versions}",
        f"* {valgrind_version() or 'valgrind version unknown'}",
        f"* portastreams commit {commit}",
        "",
        "Command::",
        "",
        "   " + report.command_line(argv, "python -m benchmarks.instructions"),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")


def valgrind_version() -> str | None:
    try:
        completed = subprocess.run(
            ["valgrind", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


# -- the command line -------------------------------------------------------------


def _select(names: Sequence[str], patterns: str | None) -> list[str]:
    if not patterns:
        return list(names)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in wanted)]


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description=(
            "Instructions per item (callgrind) of each contender, client and "
            "server workloads, and their ratios to the native contenders."
        ),
    )
    result.add_argument(
        "--workloads",
        help="comma-separated glob patterns of client and server workloads",
    )
    result.add_argument(
        "--contenders",
        default=DEFAULT_CONTENDERS,
        help=f"comma-separated glob patterns (default {DEFAULT_CONTENDERS!r}; "
        "'*' adds AnyIO's BufferedByteStream, slow to count)",
    )
    result.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the client sizes and the servers' warm-up and counting "
        "window (default 1: 20,000 and 100,000 lines, 10 s of load counted, ...)",
    )
    result.add_argument("--json", type=Path, help="write the counts to this file")
    result.add_argument(
        "--rst", type=Path, help="write the results page (reStructuredText) here"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    missing = valgrind_missing()
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    client_names = _select(workloads.workload_names(), args.workloads)
    server_names = _select([w.name for w in workloads.SERVER_WORKLOADS], args.workloads)
    if not client_names and not server_names:
        print(f"no workload matches {args.workloads!r}", file=sys.stderr)
        return 2
    compile_sources()
    counts: list[Count] = []
    for name in client_names:
        workload = workloads.get(name)
        small, large = CLIENT_SIZES[name]
        sizes = (max(1, round(small * args.scale)), max(2, round(large * args.scale)))
        for contender_name in _select(contenders.contender_names(), args.contenders):
            count = count_client(workload, contenders.get(contender_name), sizes)
            _progress(count)
            counts.append(count)
    window = WINDOW_SECONDS * args.scale
    warmup = max(MIN_WARMUP_SECONDS, WARMUP_SECONDS * args.scale)
    for server_workload in workloads.SERVER_WORKLOADS:
        if server_workload.name not in server_names:
            continue
        names = _select(contenders.server_contender_names(), args.contenders)
        for contender_name in names:
            contender = contenders.get_server(contender_name)
            for count in count_server(server_workload, contender, window, warmup):
                _progress(count)
                counts.append(count)
    add_ratios(counts)
    rows = table(counts)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(c) for c in counts], indent=2) + "\n")
    if args.rst is not None:
        write_rst(args.rst, counts, sys.argv[1:] if argv is None else argv)
    return 1 if any(count.error for count in counts) else 0


def compile_sources() -> None:
    """Byte-compile the project's modules before anything is counted.

    Otherwise the first process to import a module edited since its last
    import compiles it, and that compilation lands in one of a client's two
    counted runs: the difference between them came out a third low so.
    """
    for package in ("portastreams", "benchmarks"):
        compileall.compile_dir(ROOT / package, quiet=1)


def _progress(count: Count) -> None:
    if count.error is not None:
        result = f"failed: {count.error}"
    else:
        assert count.per_unit is not None
        result = f"{count.per_unit:,.0f} per {count.unit} over {count.items:,}"
    print(f"{count.workload} {count.contender}: {result}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
