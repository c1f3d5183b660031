"""``benchmarks.instructions``: instructions per item, counted by callgrind.

A client and a server contender are counted for real, at a tiny size, next
to their native contender; the arithmetic (differences, ratios, the report)
is checked on made-up counts.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from programs import require_program

from benchmarks import contenders, instructions, workloads
from benchmarks._check import Mismatch
from benchmarks.instructions import Count

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the benchmark harness uses /proc (Linux), valgrind Linux or macOS",
)


@pytest.mark.timeout(600)  # four processes under valgrind, about a minute here
def test_a_client_and_a_server_are_counted_next_to_their_native(
    tmp_path: Path,
) -> None:
    require_program("valgrind", "valgrind")
    require_program("callgrind_control", "valgrind")
    require_program("wrk", "wrk")
    results = tmp_path / "counts.json"
    rst = tmp_path / "counts.rst"
    code = instructions.main(
        [
            "--workloads",
            "lines,http",
            "--contenders",
            "portastreams/asyncio,asyncio-streams/asyncio",
            "--scale",
            "0.05",
            "--json",
            str(results),
            "--rst",
            str(rst),
        ]
    )
    assert code == 0
    counts = {
        (c["workload"], c["contender"]): c for c in json.loads(results.read_text())
    }
    assert set(counts) == {
        (workload, contender)
        for workload in ("lines", "http")
        for contender in ("portastreams/asyncio", "asyncio-streams/asyncio")
    }
    for key, count in counts.items():
        assert count["error"] is None, key
        assert count["items"] > 0, key
        # Instructions per line or per request of any stream library in
        # Python: more than a few hundred, well under a million (a count
        # that took start-up in, or only the difference of noise, is not).
        assert 300 < count["per_unit"] < 1_000_000, (key, count)
        if count["contender"] == "asyncio-streams/asyncio":
            assert count["ratio"] == pytest.approx(1.0)
        else:
            # The same work, done by another library: within a factor of 3.
            assert 1 / 3 < count["ratio"] < 3, (key, count)
    assert counts["lines", "portastreams/asyncio"]["unit"] == "line"
    assert counts["http", "portastreams/asyncio"]["unit"] == "request"
    page = rst.read_text()
    assert page.startswith("Instructions per item\n")
    for section in ("Clients", "Servers", "Machine and command"):
        assert f"\n{section}\n" in page
    assert "valgrind-" in page
    assert "--workloads lines,http" in page


def test_a_client_count_is_the_difference_of_two_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Start-up cancels out: only what the extra items cost is counted."""
    startup, per_line = 5_000_000, 700
    runs: list[int] = []

    def run(workload: object, contender: object, size: int, out_dir: Path) -> int:
        runs.append(size)
        return startup + per_line * size

    monkeypatch.setattr(instructions, "_client_run", run)
    count = instructions.count_client(
        workloads.get("lines"), contenders.get("portastreams/trio"), (1_000, 5_000)
    )
    assert runs == [1_000, 5_000]
    assert count.per_unit == pytest.approx(per_line)
    assert count.items == 4_000
    assert (count.unit, count.error) == ("line", None)

    fanin = instructions.count_client(
        workloads.get("fanin"), contenders.get("portastreams/trio"), (10, 30)
    )
    # Per round trip: each size is per connection.
    assert fanin.per_unit == pytest.approx(per_line / workloads.FANIN_CONNECTIONS)
    assert fanin.unit == "round trip"
    bulk = instructions.count_client(
        workloads.get("bulk"), contenders.get("portastreams/trio"), (2**20, 2**21)
    )
    assert bulk.unit == "64 KiB"
    assert bulk.per_unit == pytest.approx(per_line * 65_536)


def test_a_failed_client_run_is_reported_not_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(workload: object, contender: object, size: int, out_dir: Path) -> int:
        raise Mismatch("line 7 differs")

    monkeypatch.setattr(instructions, "_client_run", run)
    count = instructions.count_client(
        workloads.get("lines"), contenders.get("portastreams/trio"), (1, 2)
    )
    assert (count.per_unit, count.error) == (None, "line 7 differs")


def test_ratios_are_to_the_fewest_instructions_of_the_backends_natives() -> None:
    def client(contender: str, per_unit: float | None) -> Count:
        backend = contender.split("/")[1]
        return Count("client", "lines", contender, backend, "line", per_unit)

    counts = [
        client("portastreams/trio", 800.0),
        client("anyio-buffered/trio", 1_600.0),
        client("trio-buffer/trio", 1_000.0),
        client("portastreams/asyncio", 500.0),
        client("asyncio-streams/asyncio", None),  # failed: no ratio on asyncio
        Count("server", "lines", "portastreams/trio", "trio", "request", 10.0),
    ]
    instructions.add_ratios(counts)
    assert [c.ratio for c in counts] == [
        pytest.approx(1.25),
        pytest.approx(1_000 / 1_600),
        pytest.approx(1.0),
        None,
        None,
        None,  # a server count is compared with servers only
    ]
    rows = instructions.table(counts)
    assert rows[1] == ["lines", "portastreams/trio", "800", "line", "1.25x"]
    assert rows[3][4] == "native"
    assert rows[5] == ["lines", "asyncio-streams/asyncio", "failed", "line", "-"]


def test_the_totals_of_a_callgrind_file_are_read(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("version: 1\ncmd: python\nevents: Ir\nfl=x\n1 5\ntotals: 123456\n")
    assert instructions.total_instructions(out) == 123_456
    out.write_text("version: 1\n")
    with pytest.raises(Mismatch):
        instructions.total_instructions(out)


def test_without_valgrind_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda program: None)
    assert instructions.main(["--workloads", "lines"]) == 2
    assert "apt-get install -y valgrind" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["--scale", "0.1", "--json", "out.json"], "--scale 0.1"),
        (["--rst=page.rst", "--workloads", "lines"], "--workloads lines"),
        (["--plot", "p.png", "--rst", "r.rst", "--rounds", "3"], "--rounds 3"),
        (["--profile", "dir", "--contenders", "*/trio"], "--contenders */trio"),
    ],
)
def test_a_page_shows_its_command_without_output_paths(
    argv: list[str], shown: str
) -> None:
    """The command a results page shows is the measuring one: the output
    options and their paths (which name the machine it ran on) are left out."""
    from benchmarks import report

    assert report.command_line(argv) == f"python -m benchmarks {shown}"
    assert report.command_line(argv, "prog") == f"prog {shown}"
