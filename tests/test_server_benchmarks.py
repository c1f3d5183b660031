"""The server benchmarks (``benchmarks/``): correctness checks and figures, not timing.

The servers run under the real load generators (``redis-benchmark``, ``wrk``)
at a tiny scale; every contender must pass the harness's checks and yield
every figure. The checks themselves are tested against a real Redis (they
must accept it) and against deliberately wrong servers (they must refuse
them).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from programs import require_program

from benchmarks import loadgen, server_check
from benchmarks._check import Mismatch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the benchmark harness uses os.sched_setaffinity and /proc (Linux)",
)

SERVER_WORKLOADS = {
    "resp-p1": ("ping_inline", "ping_mbulk", "set", "get"),
    "resp-p16": ("ping_inline", "ping_mbulk", "set", "get"),
    "http": ("get",),
}
SERVER_CONTENDERS = {
    "portastreams/asyncio",
    "portastreams/uvloop",
    "portastreams/trio",
    "asyncio-streams/asyncio",
    "asyncio-streams/uvloop",
    "trio-buffer/trio",
}


def _environment(**changes: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH", "")])
    )
    env.update(changes)
    return env


def _run_suite(
    *arguments: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def test_every_server_workload_and_contender_verifies(tmp_path: Path) -> None:
    require_program("redis-benchmark", "redis-tools")
    require_program("wrk", "wrk")
    usable = sorted(os.sched_getaffinity(0))
    placement = "split" if len(usable) > 1 else "unpinned"
    results = tmp_path / "results.json"
    _run_suite(
        "--workloads",
        ",".join(SERVER_WORKLOADS),
        "--placements",
        placement,
        "--scale",
        "0.0025",
        "--rounds",
        "1",
        "--idle-connections",
        "20",
        "--json",
        str(results),
        env=_environment(),
    )
    data: dict[str, Any] = json.loads(results.read_text())
    assert data["runs"] == []
    assert data["meta"]["skipped_workloads"] == {}

    summary = {
        (s["workload"], s["test"], s["contender"]): s for s in data["server_summary"]
    }
    assert set(summary) == {
        (w, t, c)
        for w, tests in SERVER_WORKLOADS.items()
        for t in tests
        for c in SERVER_CONTENDERS
    }
    for key, entry in summary.items():
        assert entry["verified"], (key, entry["errors"])
        assert entry["placement"] == placement, key
        assert entry["median"] > 0, key
        assert 0 < entry["p50_ms"] <= entry["p99_ms"], key
        assert entry["cpu_us_per_request"] > 0, key
        assert entry["idle_kib_per_connection"] is not None, key
        assert entry["ratio"] > 0, key
        assert entry["cpu_ratio"] > 0, key
        if entry["contender"] == entry["native"]:
            assert entry["ratio"] == pytest.approx(1.0), key
    natives = {n for names in data["meta"]["server_native"].values() for n in names}
    assert {s["native"] for s in data["server_summary"]} == natives

    sizes = {n: info["size"] for n, info in data["meta"]["server_workloads"].items()}
    pipelines = {
        n: info["pipeline"] for n, info in data["meta"]["server_workloads"].items()
    }
    assert len(data["server_runs"]) == len(SERVER_WORKLOADS) * len(SERVER_CONTENDERS)
    for run in data["server_runs"]:
        assert run["verified"], run
        assert run["idle_connections"] == 20
        assert run["baseline_rss_kib"] > 0, run
        if placement == "split":
            assert (run["server_cpu"], run["tool_cpu"]) == (usable[0], usable[-1])
        assert [t["test"] for t in run["tests"]] == list(
            SERVER_WORKLOADS[run["workload"]]
        )
        for test in run["tests"]:
            if run["workload"] == "http":
                # wrk counts the responses it read; a few more may be in flight.
                assert test["requests"] <= test["served"] <= test["requests"] + 100
            else:
                # Every reply redis-benchmark read, at most what it sent.
                size, pipeline = sizes[run["workload"]], pipelines[run["workload"]]
                assert test["requests"] == size
                assert size <= test["served"] <= -(-size // pipeline) * pipeline


def test_a_missing_load_generator_skips_only_its_workload(tmp_path: Path) -> None:
    """With no load generator on PATH: an install hint, and the rest still runs."""
    results = tmp_path / "results.json"
    empty = tmp_path / "bin"
    empty.mkdir()
    completed = _run_suite(
        "--workloads",
        "http,pingpong",
        "--contenders",
        "asyncio-streams/asyncio",
        "--placements",
        "unpinned",
        "--scale",
        "0.0005",
        "--rounds",
        "1",
        "--json",
        str(results),
        env=_environment(PATH=str(empty)),
    )
    assert "apt-get install -y wrk" in completed.stderr
    data: dict[str, Any] = json.loads(results.read_text())
    assert list(data["meta"]["skipped_workloads"]) == ["http"]
    assert "apt-get install -y wrk" in data["meta"]["skipped_workloads"]["http"]
    assert data["server_runs"] == []
    assert [(r["workload"], r["verified"]) for r in data["runs"]] == [
        ("pingpong", True)
    ]


# -- the checks against a real Redis ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _redis_server() -> Iterator[int]:
    program = require_program("redis-server", "redis-server")
    port = _free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(
        [program, *options, "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_resp_checks_accept_a_real_redis() -> None:
    """What the harness expects of the RESP server is what Redis does."""
    benchmark = require_program("redis-benchmark", "redis-tools")
    with _redis_server() as port:
        server_check.check_resp(port)
        command = loadgen.redis_benchmark_command(benchmark, port, "set", 100, 5, 1)
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=True
        )
        result = loadgen.parse_redis_benchmark(completed.stdout, "set", 100)
        assert result.requests_per_second > 0
        # The value redis-benchmark's SET wrote is one the harness predicts.
        server_check.check_resp_benchmark_key(port)


# -- the checks against wrong servers ------------------------------------------------


@contextlib.contextmanager
def _fake_server(reply: Callable[[bytes], bytes | None]) -> Iterator[int]:
    """A thread serving each connection: ``reply(received)``; None closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        # The checks hang up on a wrong reply: a reset is no error here.
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                answer = reply(data)
                if answer is None:
                    return
                conn.sendall(answer)

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_wrong_get_value_fails_the_benchmark_key_check() -> None:
    with (
        _fake_server(lambda data: b"$3\r\nabc\r\n") as port,
        pytest.raises(Mismatch, match="after redis-benchmark's SET"),
    ):
        server_check.check_resp_benchmark_key(port, timeout=5.0)


def test_a_missing_get_value_fails_the_benchmark_key_check() -> None:
    with (
        _fake_server(lambda data: b"$-1\r\n") as port,
        pytest.raises(Mismatch, match="after redis-benchmark's SET"),
    ):
        server_check.check_resp_benchmark_key(port)


def test_a_server_that_answers_pong_to_everything_fails_the_resp_check() -> None:
    with (
        _fake_server(
            lambda data: b"+PONG\r\n" * max(1, data.count(b"\r\n") // 2)
        ) as port,
        pytest.raises(Mismatch, match="PING with a message"),
    ):
        server_check.check_resp(port, timeout=5.0)


def test_a_server_that_ignores_connection_close_fails_the_http_check() -> None:
    from benchmarks.protocols import HTTP_RESPONSE

    with (
        _fake_server(lambda data: HTTP_RESPONSE * data.count(b"\r\n\r\n")) as port,
        pytest.raises(TimeoutError),
    ):
        server_check.check_http(port, timeout=1.0)


# -- the load generators' output ---------------------------------------------------


REDIS_BENCHMARK_CSV = """\
"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"GET","156739.81","5.079","0.328","4.895","5.207","20.751","133.247"
"""

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:43775/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.20ms   13.18ms 162.01ms   96.91%
    Req/Sec    23.87k     3.54k   26.59k    90.00%
  Latency Distribution
     50%  386.00us
     75%    4.00ms
     90%    5.90ms
     99%   86.08ms
  47602 requests in 2.01s, 3.54MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:  23706.53
Transfer/sec:      1.76MB
"""


def test_redis_benchmark_csv_is_read() -> None:
    result = loadgen.parse_redis_benchmark(REDIS_BENCHMARK_CSV, "get", 50_000)
    assert result == loadgen.ToolResult(50_000, 156739.81, 4.895, 20.751, [])
    with pytest.raises(loadgen.ToolOutputError):
        loadgen.parse_redis_benchmark(REDIS_BENCHMARK_CSV, "set", 50_000)
    with pytest.raises(loadgen.ToolOutputError):
        loadgen.parse_redis_benchmark("ERROR: connection refused", "get", 1)


def test_wrk_output_is_read_errors_included() -> None:
    result = loadgen.parse_wrk(WRK_OUTPUT)
    assert result.requests == 47602
    assert result.requests_per_second == 23706.53
    assert result.p50_ms == pytest.approx(0.386)
    assert result.p99_ms == pytest.approx(86.08)
    assert result.errors == [
        "wrk socket errors: connect 0, read 3, write 0, timeout 0",
        "wrk: 7 non-2xx/3xx responses",
    ]
    with pytest.raises(loadgen.ToolOutputError):
        loadgen.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")
