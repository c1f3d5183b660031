"""The benchmark harness (``benchmarks/``) at a tiny scale: correctness, not timing.

Every workload x contender runs once in its own process against the peer and
must verify its data; a client that gets fewer items than it expects must
fail. The suite runs in subprocesses, as ``python -m benchmarks`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"lines", "frames", "bulk", "pingpong", "fanin", "upload"}
CONTENDERS = {
    "portastreams/asyncio",
    "portastreams/uvloop",
    "portastreams/trio",
    "asyncio-streams/asyncio",
    "asyncio-streams/uvloop",
    "anyio-buffered/asyncio",
    "anyio-buffered/uvloop",
    "anyio-buffered/trio",
    "trio-buffer/trio",
}

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the benchmark harness uses os.sched_setaffinity (Linux)",
)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), env.get("PYTHONPATH", "")])
    )
    return env


def _run_suite(*arguments: str, env: dict[str, str] | None = None) -> str:
    """Run ``python -m benchmarks ARGUMENTS``; return its stderr. It must succeed."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", *arguments],
        cwd=ROOT,
        env=_environment() if env is None else env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stderr


def test_every_workload_and_contender_verifies(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    _run_suite(
        "--workloads",
        ",".join(sorted(WORKLOADS)),
        "--placements",
        "unpinned",
        "--scale",
        "0.0005",
        "--rounds",
        "1",
        "--json",
        str(results),
    )
    data: dict[str, Any] = json.loads(results.read_text())

    summary = {(s["workload"], s["contender"]): s for s in data["summary"]}
    assert set(summary) == {(w, c) for w in WORKLOADS for c in CONTENDERS}
    for key, entry in summary.items():
        assert entry["verified"], (key, entry["errors"])
        assert entry["placement"] == "unpinned", key
        assert entry["median"] > 0, key
        assert entry["peak_rss_kib"] > 0, key
        assert entry["ratio"] is not None, key
        assert entry["ratio"] > 0, key
    for backend, natives in data["meta"]["native"].items():
        for workload in WORKLOADS:
            ratios = [summary[workload, n]["ratio"] for n in natives]
            assert max(ratios) == pytest.approx(1.0), (backend, workload)

    sizes = {name: info["size"] for name, info in data["meta"]["workloads"].items()}
    assert len(data["runs"]) == len(WORKLOADS) * len(CONTENDERS)
    for run in data["runs"]:
        assert run["verified"], run
        detail, size = run["detail"], sizes[run["workload"]]
        expected = {
            "lines": {"lines": size},
            "frames": {"frames": size},
            "bulk": {"bytes": size},
            "pingpong": {"round_trips": size},
            "fanin": {"connections": 200, "round_trips": 200 * size},
            "upload": {"bytes": size * 65536},
        }[run["workload"]]
        assert {k: detail[k] for k in expected} == expected, run
        assert (run["peer_cpu"], run["client_cpu"]) == (None, None), run
    assert data["server_runs"] == []


def test_each_placement_pins_as_it_says(tmp_path: Path) -> None:
    """shared: one CPU for both; split: one each; unpinned: none; ratios per placement."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("the split placement needs two usable CPUs")
    first, second = usable[0], usable[-1]
    results = tmp_path / "results.json"
    natives = ("asyncio-streams/asyncio", "trio-buffer/trio")
    _run_suite(
        "--workloads",
        "pingpong,upload",
        "--contenders",
        ",".join(natives),
        "--cpus",
        f"{first},{second}",
        "--scale",
        "0.0005",
        "--rounds",
        "1",
        "--json",
        str(results),
    )
    data: dict[str, Any] = json.loads(results.read_text())
    expected_cpus = {
        "shared": (second, second),
        "split": (first, second),
        "unpinned": (None, None),
    }
    assert data["meta"]["client_placements"] == list(expected_cpus)
    seen = set()
    for run in data["runs"]:
        assert run["verified"], run
        cpus = (run["peer_cpu"], run["client_cpu"])
        assert cpus == expected_cpus[run["placement"]], run
        seen.add((run["workload"], run["placement"], run["contender"]))
    assert seen == {
        (w, p, c)
        for w in ("pingpong", "upload")
        for p in expected_cpus
        for c in natives
    }
    for entry in data["summary"]:
        # Each is its backend's native contender, in each placement on its own.
        assert entry["native"] == entry["contender"], entry
        assert entry["ratio"] == pytest.approx(1.0), entry


def test_a_short_stream_fails_verification() -> None:
    """The peer sends 10 lines; a client expecting 11 must not report success."""
    peer = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peer", "lines", str(10 * 64)],
        cwd=ROOT,
        env=_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert peer.stdout is not None
        port = peer.stdout.readline().decode().split()[1]
        for contender in ("asyncio-streams/asyncio", "portastreams/trio"):
            command = ["-m", "benchmarks.client", "lines", contender, port, "11"]
            client = subprocess.run(
                [sys.executable, *command],
                cwd=ROOT,
                env=_environment(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert client.returncode == 1, client.stdout + client.stderr
            report = json.loads(client.stdout.strip().splitlines()[-1])
            assert report["verified"] is False
            assert "lines: got 10, expected 11" in report["error"]
    finally:
        assert peer.stdin is not None
        peer.stdin.close()
        peer.wait(timeout=10)
        assert peer.stdout is not None
        peer.stdout.close()
