"""socat, as the client, against the echo servers: ``python -m portastreams
echo-server`` (TCP and Unix) and the seed's ``examples/echo_server.py``.

Each server runs as a program on each backend; socat sends several MiB of
every byte value, half-closes, and must get back exactly what it sent --
several clients at once, too. The servers must then stop cleanly on Ctrl+C.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Final

import pytest
from programs import require_program
from sockets import Kind
from subprocesses import BACKEND_NAMES, EXAMPLES, Background

pytestmark = pytest.mark.parametrize("backend", BACKEND_NAMES)

#: Deadline for each socat run.
TIMEOUT: Final = 60.0


def payload(size: int) -> bytes:
    """``size`` random bytes: every byte value, newlines and NULs included."""
    return os.urandom(size)


def socat_argv(address: str) -> list[str]:
    """socat from its standard input to ``address`` and back to its standard output.

    ``-t``: after sending EOF, wait this long for the other direction to end
    (the default, half a second, could cut a slow echo short).
    """
    socat = require_program("socat", "socat")
    return [socat, "-t", str(TIMEOUT), "-", address]


def echo_server(backend: str, kind: Kind, directory: Path) -> tuple[Background, str]:
    """Start ``python -m portastreams echo-server``; return it and socat's address for it."""
    argv = ["-m", "portastreams", "echo-server", "--backend", backend]
    path = str(directory / "echo.sock")
    argv += ["--unix", path] if kind == "unix" else ["--port", "0"]
    server = Background(argv)
    line = server.wait_for_line(lambda line: line.startswith("Serving on "))
    if kind == "unix":
        assert line == f"Serving on {path} with {backend}; Ctrl+C to stop\n"
        return server, f"UNIX-CONNECT:{path}"
    match = re.fullmatch(
        rf"Serving on 127\.0\.0\.1:(\d+) with {backend}; Ctrl\+C to stop\n", line
    )
    assert match, line
    return server, f"TCP:127.0.0.1:{match.group(1)}"


def test_socat_through_the_echo_server(
    backend: str, kind: Kind, sock_dir: Path
) -> None:
    data = payload(4 * 2**20 + 17)
    server, address = echo_server(backend, kind, sock_dir)
    with server:
        result = subprocess.run(
            socat_argv(address), input=data, capture_output=True, timeout=TIMEOUT
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
        assert len(result.stdout) == len(data)
        assert result.stdout == data
        assert server.interrupt() == 0, server.output()
    assert server.stdout_lines[-1] == "stopped\n"
    assert any(line.endswith(": closed\n") for line in server.stdout_lines)
    assert server.stderr_lines == []
    if kind == "unix":
        assert not (sock_dir / "echo.sock").exists()


def test_several_socat_clients_at_once(
    backend: str, kind: Kind, sock_dir: Path
) -> None:
    server, address = echo_server(backend, kind, sock_dir)
    with server:
        clients = []
        for i in range(8):
            data = payload(256 * 1024 * (i + 1))
            process = subprocess.Popen(
                socat_argv(address),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            clients.append((process, data))
        for process, data in clients:
            out, err = process.communicate(data, timeout=TIMEOUT)
            assert process.returncode == 0, err
            assert out == data
        assert server.interrupt() == 0, server.output()
    closed = [line for line in server.stdout_lines if line.endswith(": closed\n")]
    assert len(closed) == len(clients)
    assert server.stderr_lines == []


def test_socat_and_the_seed_echo_server(backend: str) -> None:
    # The seed's server reads one message of up to 100 bytes and echoes it.
    argv = [str(EXAMPLES / "echo_server.py"), "--backend", backend, "--port", "0"]
    with Background(argv) as server:
        line = server.wait_for_line(lambda line: line.startswith("Serving on "))
        port = re.fullmatch(r"Serving on \('127\.0\.0\.1', (\d+)\)\n", line)
        assert port, line
        result = subprocess.run(
            socat_argv(f"TCP:127.0.0.1:{port.group(1)}"),
            input=b"Hello from socat!",
            capture_output=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"Hello from socat!"
        server.wait_for_line(lambda line: line == "Close the client socket\n")
        assert server.interrupt() == 0, server.output()
    assert server.stdout_lines[1].startswith("Received 'Hello from socat!' from ")
    assert server.stderr_lines == []
