"""Run the examples and ``python -m portastreams`` as child processes, with deadlines.

Shared by ``test_examples.py`` and ``test_cli.py``. Children run with
``sys.executable`` from the repository root, unbuffered, and with
``ResourceWarning`` shown, so that a leaked socket shows up on stderr (which
the tests expect to be empty).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Final

REPO: Final = Path(__file__).resolve().parent.parent
EXAMPLES: Final = REPO / "examples"
BACKEND_NAMES: Final = ("asyncio", "uvloop", "trio")

#: Deadline for a child to finish, or for a server to print something.
TIMEOUT: Final = 30.0


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours, unbuffered, no inherited CA overrides."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "PYTHONWARNINGS")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def python_argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-W", "default::ResourceWarning", *args]


def run_python(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` to completion (killed after ``timeout`` seconds)."""
    return subprocess.run(
        python_argv(args),
        cwd=REPO,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Everything about a finished child, for assertion messages."""
    return (
        f"exit status {result.returncode}\n--- stdout ---\n{result.stdout}"
        f"--- stderr ---\n{result.stderr}"
    )


class Background:
    """A child that keeps running (a server); its output is collected by threads.

    Use as a context manager: leaving it kills the child if it still runs.
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        command: Sequence[str] | None = None,
        cwd: Path = REPO,
    ):
        """Run ``python ARGS``, or ``COMMAND ARGS`` (another program) in ``cwd``."""
        self.process = subprocess.Popen(
            python_argv(args) if command is None else [*command, *args],
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(
                target=self._pump,
                args=(self.process.stdout, self.stdout_lines, True),
                daemon=True,
            ),
            threading.Thread(
                target=self._pump,
                args=(self.process.stderr, self.stderr_lines, False),
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, pipe: IO[str], lines: list[str], notify: bool) -> None:
        with pipe:
            for line in pipe:
                lines.append(line)
                if notify:
                    self._lines.put(line)
        if notify:
            self._lines.put(None)

    def wait_for_line(
        self, predicate: Callable[[str], bool], timeout: float = TIMEOUT
    ) -> str:
        """Return the next stdout line for which ``predicate`` is true.

        Fails (with the output so far) if the child exits or ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError(
                    f"no matching line within {timeout} s\n{self.output()}"
                ) from None
            if line is None:
                self.process.wait(timeout=TIMEOUT)
                raise AssertionError(
                    f"child exited ({self.process.returncode}) before printing "
                    f"the line\n{self.output()}"
                )
            if predicate(line):
                return line

    def interrupt(self, timeout: float = TIMEOUT) -> int:
        """Send SIGINT (Ctrl+C), wait for the exit and the output; return the status."""
        self.process.send_signal(signal.SIGINT)
        returncode = self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)
        return returncode

    def output(self) -> str:
        return (
            f"--- stdout ---\n{''.join(self.stdout_lines)}"
            f"--- stderr ---\n{''.join(self.stderr_lines)}"
        )

    def __enter__(self) -> Background:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        for thread in self._threads:
            thread.join(timeout=TIMEOUT)
