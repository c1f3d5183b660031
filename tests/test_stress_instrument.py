"""The stress suite's instrument itself: its checks can fail, and its expectations are right.

* The frame handler's expected replies are simulated by the suite: the
  simulation must match the real handler, run on CPython's own
  ``asyncio.StreamReader`` and on portastreams' reader on every backend.
* The delivery check, the leak checks and the verification pattern must
  catch a lost byte, a leaked descriptor or task, a wrong byte.
* asyncio's own server (the control) passes the experiments whose criteria
  do not depend on portastreams' logging contract: the criteria are
  attainable, not artefacts of the instrument.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import portastreams
from stress import wire
from stress.experiments import EXPERIMENTS
from stress.experiments.common import Certificates, ServerLife, delivery
from stress.experiments.soak import plan
from stress.handler import Entry, Ledger, Reader, handle
from stress.processes import ROOT
from stress.profiles import SHORT
from stress.results import CONTROL, SUBJECT, Row, Target

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the stress suite reads /proc and lowers RLIMIT_NOFILE (Linux)",
)

# -- the frame handler against its simulation -----------------------------------

frame_streams = st.lists(
    st.one_of(
        st.binary(max_size=40).map(wire.frame),
        st.binary(max_size=9),
        st.integers(wire.MAX_FRAME - 1, wire.MAX_FRAME + 1).map(wire.FRAME_HEADER.pack),
    ),
    max_size=6,
).map(b"".join)


class CollectingWriter:
    """A writer that keeps what the handler writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def replies_of(reader: Reader, stream: bytes) -> bytes:
    writer = CollectingWriter()
    await handle(reader, writer, Entry(mode=""), Ledger())
    return bytes(writer.data)


@given(stream=frame_streams)
def test_frame_simulation_matches_the_handler_on_asyncio_streams(stream: bytes) -> None:
    async def run() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(wire.header(wire.FRAMES, 1) + stream)
        reader.feed_eof()
        return await replies_of(reader, stream)

    assert asyncio.run(run()) == wire.expected_frame_replies(stream).reply


@pytest.mark.anyio
@given(stream=frame_streams)
async def test_frame_simulation_matches_the_handler_on_portastreams(
    stream: bytes,
) -> None:
    with anyio.fail_after(10):
        reader = portastreams.StreamReader()
        reader.feed_data(wire.header(wire.FRAMES, 1) + stream)
        reader.feed_eof()
        assert await replies_of(reader, stream) == (
            wire.expected_frame_replies(stream).reply
        )


# -- the checks catch what they are for --------------------------------------------


@given(offset=st.integers(0, 10**9), size=st.integers(0, 3 * 2**20))
def test_pattern_is_one_continuous_stream(offset: int, size: int) -> None:
    cut = size // 3
    whole = wire.pattern(offset, size)
    assert len(whole) == size
    assert whole == wire.pattern(offset, cut) + wire.pattern(offset + cut, size - cut)
    assert wire.pattern_mismatch(offset, whole) is None


@given(
    offset=st.integers(0, 10**6),
    size=st.integers(1, 2**21),
    data=st.data(),
)
def test_pattern_mismatch_finds_the_first_wrong_byte(
    offset: int, size: int, data: st.DataObject
) -> None:
    wrong = data.draw(st.integers(0, size - 1))
    chunk = bytearray(wire.pattern(offset, size))
    chunk[wrong] ^= 0xFF
    assert wire.pattern_mismatch(offset, chunk) == offset + wrong
    # Shifted by one byte, the pattern breaks at once.
    assert wire.pattern_mismatch(offset + 1, wire.pattern(offset, size)) == offset + 1


def outcome(
    cid: int, received: int, *, end: str = "eof", lost: int = 0
) -> dict[str, Any]:
    return {
        "scenario": "echo",
        "cid": cid,
        "ok": True,
        "exact": True,
        "end": end,
        "received": received,
        "verified": received,
        "lost": lost,
    }


def test_delivery_counts_every_lost_byte() -> None:
    ledger = {"1": ["E", 100, 100, 9, "returned"], "2": ["E", 50, 40, 9, "returned"]}
    assert delivery([outcome(1, 100), outcome(2, 45)], ledger) == (145, 0, [])
    verified, lost, problems = delivery([outcome(1, 97), outcome(2, 39)], ledger)
    assert (verified, lost) == (136, 4)
    assert len(problems) == 2
    # More than was written is wrong too; a client's own count of missing
    # bytes adds up; a connection the client reset is not judged.
    _, _, problems = delivery([outcome(2, 51)], ledger)
    assert problems == ["echo #2: received 51, more than the 50 written"]
    assert delivery([outcome(1, 90, lost=10)], ledger)[1] == 20
    assert delivery([outcome(1, 0, end="reset")], ledger) == (0, 0, [])
    _, _, problems = delivery([outcome(3, 1)], ledger)
    assert problems == ["echo #3: the server has no record of it"]


def test_soak_plan_is_reproducible() -> None:
    sessions, bursts = plan(SHORT)
    assert (sessions, bursts) == plan(SHORT)
    assert len(sessions) == SHORT.soak_seconds * SHORT.soak_sessions_per_second
    assert len(bursts) == SHORT.soak_bursts
    assert plan(SHORT.with_seed(1)) != (sessions, bursts)
    assert {name for name, *_ in sessions} >= {"echo", "garbage_frames", "tls_echo"}


@linux_only
def test_leak_checks_catch_a_leaked_descriptor_and_task(backend_name: str) -> None:
    row = Row("self-test", Target(SUBJECT, backend_name))
    with ServerLife(row, SHORT) as life:
        life.server.call("leak")
        life.finish()
    assert row.figures["fds_leaked"] == 1
    assert row.figures["tasks_leaked"] == 1
    assert row.failures == ["1 file descriptors leaked", "1 tasks leaked"]


# -- asyncio's own server passes the instrument --------------------------------------

CONTROL_PASSES = [
    "load",
    "memory_error",
    "client_faults",
    "close",
    "no_separator",
    "tls_stall",
    "garbage_frames",
]


@pytest.fixture(scope="module")
def certificates() -> Iterator[Certificates]:
    with Certificates.create() as created:
        yield created


@linux_only
@pytest.mark.parametrize("experiment", CONTROL_PASSES)
def test_asyncio_control_passes(experiment: str, certificates: Certificates) -> None:
    row = EXPERIMENTS[experiment].run(Target(CONTROL, "asyncio"), SHORT, certificates)
    assert not row.failures, row.describe()


@linux_only
@pytest.mark.parametrize("experiment", ["load", "no_separator", "slowloris"])
def test_trio_control_passes(experiment: str, certificates: Certificates) -> None:
    """The hand-written trio server, the control on trio, serves the measured
    experiments by the same rules (every byte, nothing leaked)."""
    row = EXPERIMENTS[experiment].run(Target(CONTROL, "trio"), SHORT, certificates)
    assert not row.failures, row.describe()
    assert row.target.label == "trio.serve_listeners, hand-written buffer (control)"


# -- the command line ---------------------------------------------------------------


@linux_only
def test_command_line_writes_the_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stress",
            "--experiment",
            "garbage_frames",
            "--backend",
            "trio",
            "--report",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "stress-short.md").read_text()
    assert "| portastreams on trio |" in report
    assert "| asyncio.start_server on asyncio (control) |" in report
    assert (tmp_path / "stress-short.json").exists()
