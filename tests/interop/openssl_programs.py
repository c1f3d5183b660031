"""``openssl s_server`` as a test's peer: started, fed, watched, and ended two ways.

``s_server -quiet`` writes what it receives, decrypted, to its standard output
and sends what it reads from its standard input. When its input ends it sends
TLS's ``close_notify`` and closes; killing it closes the socket with no
``close_notify`` at all. With ``-quiet`` it does not print the port it listens
on, so it gets a free one, and the test waits until the port is taken by a
listening socket: a probing connection would use up its ``-naccept 1``, so
:func:`listening` binds instead of connecting.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Final

import anyio
from programs import require_program
from server_process import free_port
from tls_certificates import Certificates

#: How long a server may take to start accepting, and to finish.
STARTUP: Final = 15.0


def openssl() -> str:
    return require_program("openssl", "openssl")


class OpenSSLServer:
    """A running ``openssl s_server -quiet -naccept 1``."""

    def __init__(self, argv: Sequence[str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._lock = threading.Lock()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._pump, args=(self.process.stdout, self._stdout)
            ),
            threading.Thread(
                target=self._pump, args=(self.process.stderr, self._stderr)
            ),
        ]
        for thread in self._readers:
            thread.start()
        self._writer: threading.Thread | None = None

    def _pump(self, pipe: IO[bytes], into: bytearray) -> None:
        with pipe:
            while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
                with self._lock:
                    into += chunk

    def received(self) -> bytes:
        """What the client has sent so far, as s_server decrypted it."""
        with self._lock:
            return bytes(self._stdout)

    def errors(self) -> str:
        with self._lock:
            return self._stderr.decode(errors="replace")

    def send(self, data: bytes, *, then_close: bool = False) -> None:
        """Have s_server send ``data`` (written to its input from a thread, so
        that a full pipe never blocks the test); ``then_close``: end its input
        afterwards, so that it sends close_notify and exits."""

        def write() -> None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
                if then_close:
                    self.process.stdin.close()
            except BrokenPipeError:
                pass  # it exited; the test finds out otherwise

        self._writer = threading.Thread(target=write)
        self._writer.start()

    def close_input(self) -> None:
        """End s_server's input: it sends close_notify, closes, and exits."""
        self.send(b"", then_close=True)

    def kill(self) -> None:
        """Kill s_server: the socket closes with no close_notify."""
        self.process.kill()

    async def wait_received(self, size: int, timeout: float = STARTUP) -> bytes:
        """Wait until s_server has printed ``size`` bytes; return them."""
        with anyio.fail_after(timeout):
            while len(data := self.received()) < size:
                await anyio.sleep(0.01)
        return data

    def finish(self) -> int:
        """Wait for the exit (killing it after a while); return the status."""
        try:
            returncode = self.process.wait(timeout=STARTUP)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait(timeout=STARTUP)
        for thread in [*self._readers, *([self._writer] if self._writer else [])]:
            thread.join(timeout=STARTUP)
        return returncode


@contextmanager
def s_server(certificates: Certificates, *options: str) -> Iterator[OpenSSLServer]:
    """Run ``openssl s_server`` with the server certificate and ``options``."""
    port = free_port()
    argv = [
        openssl(),
        "s_server",
        "-quiet",
        "-naccept",
        "1",
        "-accept",
        f"127.0.0.1:{port}",
        "-cert",
        str(certificates.server_cert_file),
        "-key",
        str(certificates.server_key_file),
        *options,
    ]
    server = OpenSSLServer(argv, port)
    try:
        deadline = time.monotonic() + STARTUP
        while not listening(port):
            if server.process.poll() is not None or time.monotonic() > deadline:
                server.finish()
                raise AssertionError(f"s_server did not start:\n{server.errors()}")
            time.sleep(0.01)
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.finish()
        if server.process.stdin is not None:
            server.process.stdin.close()


def listening(port: int) -> bool:
    """True if a socket listens on 127.0.0.1:``port``; never connects to it.

    Binding with ``SO_REUSEADDR`` fails only where a socket listens (a socket
    that is merely bound, as the server's is before it listens, does not
    prevent it, nor does this one prevent the server's own bind).
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False
