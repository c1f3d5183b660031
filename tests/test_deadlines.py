"""A hung test fails within its deadline instead of hanging the suite.

Runs a small pytest session in a child process, with the project's deadline
plugin (``tests/deadlines.py``) and pytest-timeout configured with short
limits, on tests that hang in each way a planted bug can make a test hang:
a feed-mode read nobody feeds (every backend, and inside a Hypothesis
example), an event loop blocked by a synchronous call, and a synchronous
test. Each must fail with the message of the mechanism that caught it, the
tests after it must still run, and the session must end well within the
time the hung tests would otherwise take.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

from subprocesses import REPO, child_env

DEADLINE: Final = 0.3
BACKSTOP: Final = 1.5
#: How long each hanging test would hang without the deadline.
HANG: Final = 30

HANGING_TESTS: Final = f"""
import time

import anyio
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import portastreams

pytestmark = pytest.mark.anyio


async def test_feed_mode_read_nobody_feeds(anyio_backend):
    reader = portastreams.StreamReader()
    await reader.readline()


@settings(database=None, phases=[Phase.generate], max_examples=5)
@given(st.integers(0, 3))
async def test_hypothesis_example_hangs(n):
    reader = portastreams.StreamReader()
    reader.feed_data(b"x" * n)
    await reader.readexactly(n + 1)


@pytest.mark.deadline(0.1)
async def test_marker_sets_a_shorter_deadline(anyio_backend):
    await anyio.sleep({HANG})


async def test_own_timeout_error_is_not_the_deadline(anyio_backend):
    with anyio.fail_after(0.01):
        await anyio.sleep({HANG})


async def test_blocked_event_loop(anyio_backend):
    time.sleep({HANG})


async def test_backend_still_runs_afterwards(anyio_backend):
    reader = portastreams.StreamReader()
    reader.feed_data(b"line\\n")
    assert await reader.readline() == b"line\\n"


def test_synchronous_hang():
    time.sleep({HANG})
"""

CONFTEST: Final = """
import pytest
from backends import BACKENDS

pytest_plugins = ["deadlines"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request):
    return request.param
"""

INI: Final = f"""
[pytest]
async_test_deadline = {DEADLINE}
timeout = {BACKSTOP}
timeout_method = signal
"""

BACKENDS: Final = ("asyncio", "uvloop", "trio")


def run_session(directory: Path) -> tuple[dict[str, str], float, str]:
    """Run the hanging tests; return each test's failure text ("" if it passed)."""
    (directory / "test_hangs.py").write_text(textwrap.dedent(HANGING_TESTS))
    (directory / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (directory / "pytest.ini").write_text(textwrap.dedent(INI))
    report = directory / "report.xml"
    env = child_env({"PYTHONPATH": str(REPO / "tests")})
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--rootdir={directory}",
            f"--junitxml={report}",
            "-q",
            str(directory / "test_hangs.py"),
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG * 3,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        text = "" if failure is None else f"{failure.get('message')}\n{failure.text}"
        outcomes[case.get("name", "")] = text
    return outcomes, elapsed, output


def test_hung_tests_fail_within_their_deadlines(tmp_path: Path) -> None:
    outcomes, elapsed, output = run_session(tmp_path)
    expected_names = {
        f"{test}[{backend}]"
        for test in (
            "test_feed_mode_read_nobody_feeds",
            "test_hypothesis_example_hangs",
            "test_marker_sets_a_shorter_deadline",
            "test_own_timeout_error_is_not_the_deadline",
            "test_blocked_event_loop",
            "test_backend_still_runs_afterwards",
        )
        for backend in BACKENDS
    } | {"test_synchronous_hang"}
    assert set(outcomes) == expected_names, output

    for backend in BACKENDS:
        for test, deadline in (
            ("test_feed_mode_read_nobody_feeds", DEADLINE),
            ("test_hypothesis_example_hangs", DEADLINE),
            ("test_marker_sets_a_shorter_deadline", 0.1),
        ):
            failure = outcomes[f"{test}[{backend}]"]
            assert f"within its {deadline:g} s deadline" in failure, output
        # The deadline's traceback shows where the test waited.
        assert "readline" in outcomes[f"test_feed_mode_read_nobody_feeds[{backend}]"]
        own = outcomes[f"test_own_timeout_error_is_not_the_deadline[{backend}]"]
        assert "TimeoutError" in own, output
        assert "within its" not in own, output
        # A blocked loop cannot be cancelled: pytest-timeout stops it, and the
        # backend's next test still runs.
        blocked = outcomes[f"test_blocked_event_loop[{backend}]"]
        assert "Timeout" in blocked, output
        assert outcomes[f"test_backend_still_runs_afterwards[{backend}]"] == "", output
    assert "Timeout" in outcomes["test_synchronous_hang"], output

    # Ten tests that would each hang for HANG seconds: the session takes
    # about the sum of the limits, plus interpreter start-up.
    assert elapsed < HANG, output
