"""A real ``nats-server`` for the interop tests, on free ports, with its monitoring API."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from programs import require_program
from server_process import accepts, free_port, program_version, server_process


@dataclass(frozen=True)
class NatsServer:
    """A running server: clients on ``port``, the HTTP monitoring API on ``monitor_port``."""

    port: int
    monitor_port: int
    version: str
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """One of the server's monitoring endpoints (``varz``, ``connz``, ...), blocking."""
        address = f"http://{self.host}:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(address, timeout=10) as response:
            result: dict[str, Any] = json.load(response)
            return result


@contextmanager
def running_nats(
    *, config: str = "", args: Sequence[str] = (), port: int | None = None
) -> Iterator[NatsServer]:
    """Start ``nats-server`` (with ``config`` as its configuration file); kill it afterwards.

    ``port`` restarts a server where an earlier one listened (reconnect tests).
    """
    path = require_program("nats-server", "nats-server")
    version = program_version([path, "--version"])
    directory = Path(tempfile.mkdtemp(prefix="ps-nats-"))
    try:
        port = free_port() if port is None else port
        monitor_port = free_port()
        config_file = directory / "nats.conf"
        config_file.write_text(config)
        argv = [
            path,
            "--addr", "127.0.0.1",
            "--port", str(port),
            "--http_port", str(monitor_port),
            "--config", str(config_file),
            *args,
        ]  # fmt: skip
        ready = lambda: accepts(port) and accepts(monitor_port)  # noqa: E731
        with server_process(argv, directory / "nats.log", ready) as process:
            yield NatsServer(port, monitor_port, version, process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
