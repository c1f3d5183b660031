"""The load generators: real C programs from the system package manager.

``redis-benchmark`` (Debian/Ubuntu package ``redis-tools``) drives the RESP
server, ``wrk`` (package ``wrk``) the HTTP server. This module finds them,
builds their command lines and parses what they print: requests per second
and the latency percentiles they measure themselves. A missing program is
not an error of the suite: its workloads are skipped, with the command that
installs it.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "TOOLS",
    "LoadGenerator",
    "ToolResult",
    "parse_redis_benchmark",
    "parse_wrk",
    "redis_benchmark_command",
    "wrk_command",
]


@dataclass(frozen=True)
class LoadGenerator:
    """A load-generating program and the package that provides it."""

    program: str
    package: str
    homepage: str

    def path(self) -> str | None:
        """Where the program is, or None when it is not installed."""
        return shutil.which(self.program) or shutil.which(
            self.program, path="/usr/sbin:/sbin:/usr/local/sbin"
        )

    def install_hint(self) -> str:
        return (
            f"{self.program} is not installed: install it with "
            f"'apt-get install -y {self.package}' (Debian/Ubuntu; or your "
            f"system's package manager, see {self.homepage})"
        )


TOOLS: Final = {
    "redis-benchmark": LoadGenerator(
        "redis-benchmark", "redis-tools", "https://redis.io/docs/latest/"
    ),
    "wrk": LoadGenerator("wrk", "wrk", "https://github.com/wg/wrk"),
}


@dataclass
class ToolResult:
    """What one run of a load generator reported."""

    #: Requests the tool completed (its own count).
    requests: int
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    #: Problems the tool reported (error replies, socket errors, non-2xx).
    errors: list[str] = field(default_factory=list)


class ToolOutputError(ValueError):
    """The load generator printed something this module cannot read."""


# -- redis-benchmark -------------------------------------------------------------


def redis_benchmark_command(
    program: str, port: int, test: str, requests: int, clients: int, pipeline: int
) -> list[str]:
    """One redis-benchmark test (``-t``) against ``127.0.0.1:port``, CSV output.

    Without ``-r`` every SET writes the key ``key:__rand_int__`` and every GET
    reads it, so the harness can check afterwards what the server stored.
    """
    return [
        program,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-c",
        str(clients),
        "-n",
        str(requests),
        "-P",
        str(pipeline),
        "-t",
        test,
        "--csv",
    ]


def parse_redis_benchmark(output: str, test: str, requests: int) -> ToolResult:
    """The row of ``test`` in redis-benchmark's ``--csv`` output.

    The columns are ``test, rps, avg, min, p50, p95, p99, max`` (latencies in
    milliseconds; redis-benchmark 6.2 and later).
    """
    rows = [row for row in csv.reader(io.StringIO(output)) if row]
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise ToolOutputError(f"no redis-benchmark CSV header in {output[-500:]!r}")
    header = rows[0]
    wanted = test.upper()
    for row in rows[1:]:
        if row[0] != wanted:
            continue
        values = dict(zip(header, row, strict=False))
        return ToolResult(
            requests=requests,
            requests_per_second=float(values["rps"]),
            p50_ms=_optional_float(values.get("p50_latency_ms")),
            p99_ms=_optional_float(values.get("p99_latency_ms")),
        )
    raise ToolOutputError(f"no {wanted} row in redis-benchmark output {output!r}")


def _optional_float(text: str | None) -> float | None:
    return None if text is None or text == "" else float(text)


# -- wrk -----------------------------------------------------------------------------


def wrk_command(
    program: str, port: int, seconds: int, connections: int, threads: int = 1
) -> list[str]:
    """wrk with ``--latency`` (the percentile table) against ``http://127.0.0.1:port/``."""
    return [
        program,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        f"http://127.0.0.1:{port}/",
    ]


_WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_PERCENTILE = re.compile(
    r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE
)
_WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_MILLISECONDS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output: str) -> ToolResult:
    """Requests, requests/s, the 50th and 99th percentiles and any errors wrk printed."""
    total = _WRK_TOTAL.search(output)
    rate = _WRK_RATE.search(output)
    if total is None or rate is None:
        raise ToolOutputError(f"cannot read wrk's output: {output[-500:]!r}")
    percentiles = {
        match[1]: float(match[2]) * _MILLISECONDS[match[3]]
        for match in _WRK_PERCENTILE.finditer(output)
    }
    errors = []
    socket_errors = _WRK_SOCKET_ERRORS.search(output)
    if socket_errors is not None:
        connect, read, write, timeout = (int(n) for n in socket_errors.groups())
        errors.append(
            f"wrk socket errors: connect {connect}, read {read}, write {write}, "
            f"timeout {timeout}"
        )
    non_2xx = _WRK_NON_2XX.search(output)
    if non_2xx is not None:
        errors.append(f"wrk: {non_2xx[1]} non-2xx/3xx responses")
    return ToolResult(
        requests=int(total[1]),
        requests_per_second=float(rate[1]),
        p50_ms=percentiles.get("50"),
        p99_ms=percentiles.get("99"),
        errors=errors,
    )
