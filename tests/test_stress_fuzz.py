"""The server fuzz target (``stress/fuzz.py``): one batch per target and backend,
and its oracles can fail.

``nox -s fuzz`` runs it for longer (20 s per target and backend by default).
"""

from __future__ import annotations

import asyncio
import random
import sys

import pytest

from stress.fuzz import (
    BATCH,
    TARGETS,
    Probe,
    TargetServer,
    count_limit,
    fuzz,
    fuzz_one,
    log_findings,
    make_case,
    probe,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the fuzz target counts a server's descriptors in /proc (Linux)",
)


@pytest.mark.parametrize("target", TARGETS)
def test_one_batch_finds_nothing(target: str, backend_name: str) -> None:
    result = fuzz(target, backend_name, 0, count_limit(BATCH), concurrency=16)
    assert result.findings == []
    assert result.cases == BATCH
    assert result.probes == 2  # before the batch, and after it


def test_cases_are_reproducible() -> None:
    for target in TARGETS:
        first = [make_case(target, random.Random(7)) for _ in range(20)]
        again = [make_case(target, random.Random(7)) for _ in range(20)]
        assert first == again
    endings = {make_case("frames", random.Random(seed))[1] for seed in range(200)}
    assert endings == {"fin", "rst", "half_close_read", "read_then_close", "abandon"}


def test_log_oracle_flags_internal_errors_not_handler_failures() -> None:
    handler_failures = ['LOGS {"handler failure": 12, "asyncio/DEBUG": 1}\n']
    assert log_findings(handler_failures, []) == []
    assert log_findings(['LOGS {"asyncio/ERROR": 2}\n'], []) == [
        "2 log records asyncio/ERROR"
    ]
    stderr = ["Task exception was never retrieved\n", "future: <Task ...>\n"]
    assert log_findings([], stderr) == [
        "stderr contains 'Task exception was never retrieved'"
    ]


def test_probe_oracle_catches_a_wrong_reply_and_a_dead_server(
    backend_name: str,
) -> None:
    server = TargetServer("chat", backend_name)
    try:
        wrong = asyncio.run(probe(server.port, Probe(b"hi\n", b"< hi\n")))
        assert wrong == "probe got b'> hi\\n', not b'< hi\\n'"
        server.process.kill()
        server.process.wait()
        result = asyncio.run(
            fuzz_one(server, backend_name, random.Random(0), count_limit(BATCH), 4)
        )
        assert result.cases == 0
        assert len(result.findings) == 1
        assert result.findings[0].startswith("before fuzzing: probe could not connect")
    finally:
        server.stop()
