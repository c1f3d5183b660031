"""Start a real server program for a test, wait until it accepts, kill it afterwards."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest

#: How long a server may take to start accepting connections.
START_TIMEOUT: Final = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def server_process(
    argv: Sequence[str], log: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until ``ready()``; kill it on the way out.

    Fails the test, with the log, if the program exits or is not ready within
    :data:`START_TIMEOUT` seconds.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{argv[0]} did not start (exit status {process.poll()}):\n"
                    + log.read_text(errors="replace")
                )
            time.sleep(0.02)
        yield process
    finally:
        process.kill()
        process.wait(timeout=START_TIMEOUT)


def program_version(argv: Sequence[str]) -> str:
    """The first line a ``--version`` style command prints (for test reports)."""
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False
    )
    return (result.stdout or result.stderr).strip().splitlines()[0]
