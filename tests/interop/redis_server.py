"""A real ``redis-server`` for the interop tests: TCP on a free port and a Unix socket."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from programs import require_program
from server_process import accepts, free_port, program_version, server_process


@dataclass(frozen=True)
class RedisServer:
    """A running server and ``redis-cli``, the reference client, pointed at it."""

    port: int
    unix_path: str
    cli_path: str
    version: str
    #: The TLS port, when started with a certificate.
    tls_port: int | None = None
    host: str = "127.0.0.1"

    async def cli(self, *args: str, stdin: bytes | None = None) -> bytes:
        """Run ``redis-cli`` with ``args`` (its last argument from ``stdin`` with ``-x``).

        Returns its output as it prints it when not on a terminal: a bulk
        string raw, followed by a newline.
        """
        result = await anyio.run_process(
            [self.cli_path, "-h", self.host, "-p", str(self.port), *args],
            input=stdin,
        )
        return result.stdout


def _major_version(version: str) -> int:
    match = re.search(r"v=(\d+)\.", version)
    assert match, version
    return int(match.group(1))


@contextmanager
def running_redis(*, tls: tuple[Path, Path] | None = None) -> Iterator[RedisServer]:
    """Start ``redis-server`` in a temporary directory; kill it afterwards.

    Nothing is persisted (no RDB, no AOF). ``DEBUG`` is enabled (Redis 7
    turns it off by default) for the ``DEBUG SLEEP`` tests. With ``tls``
    (certificate chain and key files) it also listens for TLS on a port of
    its own, without asking clients for certificates.
    """
    server_path = require_program("redis-server", "redis-server")
    cli_path = require_program("redis-cli", "redis-tools")
    version = program_version([server_path, "--version"])
    # A short directory: a Unix socket path must fit in about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ps-redis-"))
    try:
        port = free_port()
        unix_path = str(directory / "redis.sock")
        argv = [
            server_path,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--unixsocket", unix_path,
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        if _major_version(version) >= 7:
            argv += ["--enable-debug-command", "yes"]
        tls_port = None
        if tls is not None:
            tls_port = free_port()
            argv += [
                "--tls-port", str(tls_port),
                "--tls-cert-file", str(tls[0]),
                "--tls-key-file", str(tls[1]),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        with server_process(argv, directory / "redis.log", lambda: accepts(port)):
            yield RedisServer(port, unix_path, cli_path, version, tls_port)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
