"""``python -m portastreams cat`` against socat (and, for TLS, openssl s_server).

socat listens -- over TCP, a Unix socket, or TLS (``OPENSSL-LISTEN``) -- and
echoes (``PIPE``), only sends a file, or only stores what it receives; the
cat tool runs as a program, as a user would run it, on each backend, with
several MiB on its standard input. Everything that crosses is compared byte
for byte, and so are the tool's exit status and error output.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

import anyio
import pytest
from openssl_programs import OpenSSLServer, s_server
from programs import require_program
from sockets import Kind
from subprocesses import BACKEND_NAMES, REPO, child_env
from tls_certificates import Certificates, make_certificates

pytestmark = pytest.mark.parametrize("backend", BACKEND_NAMES)

#: Deadline for each program.
TIMEOUT: Final = 30.0
#: Several MiB of every byte value, not a multiple of any buffer size.
PAYLOAD: Final = os.urandom(3 * 2**20 + 123)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


class Socat:
    """A running ``socat -d -d``; its log (standard error) is read by a thread."""

    def __init__(self, addresses: Sequence[str]) -> None:
        program = require_program("socat", "socat")
        self.process = subprocess.Popen(
            [program, "-d", "-d", *addresses],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stderr is not None
        self._thread = threading.Thread(target=self._pump, args=(self.process.stderr,))
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    self.log.append(line)
                    self._changed.notify_all()
        with self._changed:
            self.log.append("")  # the end
            self._changed.notify_all()

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first log line matching ``pattern`` (waiting for it)."""
        with self._changed:
            for _ in range(10_000):
                for line in self.log:
                    if match := re.search(pattern, line):
                        return match
                if self.log[-1:] == [""]:
                    break
                if not self._changed.wait(TIMEOUT):
                    break
        raise AssertionError(f"socat did not log {pattern!r}:\n{''.join(self.log)}")

    def finish(self) -> int:
        try:
            returncode = self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=TIMEOUT)
            self._thread.join(TIMEOUT)
        return returncode


@contextmanager
def socat(*addresses: str) -> Iterator[Socat]:
    process = Socat(addresses)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.process.kill()
        process.finish()


def listen(kind: Kind, directory: Path) -> str:
    """A socat listening address: a free TCP port on 127.0.0.1, or a Unix socket."""
    if kind == "tcp":
        return "TCP-LISTEN:0,bind=127.0.0.1"
    return f"UNIX-LISTEN:{directory / 'cat.sock'}"


#: socat's echo. Its blocks are PIPE_BUF bytes, not its default 8 KiB: socat
#: writes a block to its pipe once the pipe has room for PIPE_BUF bytes, in a
#: blocking write, while it is the pipe's only reader -- with bigger blocks and
#: a full pipe it waits on itself for ever (CPython's own asyncio client hangs
#: the same way against it).
ECHO = ("-b", "4096", "PIPE")


def target(kind: Kind, server: Socat) -> list[str]:
    """The cat tool's arguments for where ``server`` listens."""
    if kind == "tcp":
        port = server.wait_for(r"listening on AF=2 127\.0\.0\.1:(\d+)").group(1)
        return ["127.0.0.1", port]
    path = server.wait_for(r'listening on AF=1 "(.*)"').group(1)
    return ["--unix", path]


def cat_command(backend: str, arguments: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "portastreams",
        "cat",
        "--backend",
        backend,
        *arguments,
    ]


def run_cat(
    backend: str, arguments: Sequence[str], data: bytes
) -> subprocess.CompletedProcess[bytes]:
    """Run the tool with ``data`` on its standard input, to its exit."""
    return subprocess.run(
        cat_command(backend, arguments),
        input=data,
        capture_output=True,
        cwd=REPO,
        env=child_env(),
        timeout=TIMEOUT,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[bytes]) -> str:
    return f"exit status {result.returncode}: {result.stderr.decode(errors='replace')}"


# -- plain: TCP and Unix -------------------------------------------------------------


def test_echo(backend: str, kind: Kind, sock_dir: Path) -> None:
    # socat echoes; after its input ends, the tool half-closes, socat sends
    # the rest and closes, and the tool exits.
    with socat(*ECHO[:-1], listen(kind, sock_dir), ECHO[-1]) as server:
        result = run_cat(backend, target(kind, server), PAYLOAD)
        assert server.finish() == 0
    assert result.returncode == 0, describe(result)
    assert result.stdout == PAYLOAD
    assert result.stderr == b""


@pytest.mark.parametrize("source", ["file", "/dev/null"])
def test_input_that_is_not_a_pipe(backend: str, sock_dir: Path, source: str) -> None:
    # A regular file (which the event loop cannot watch: read directly) and
    # /dev/null (which epoll refuses).
    path = Path(os.devnull)
    if source == "file":
        path = sock_dir / "input.bin"
        path.write_bytes(PAYLOAD)
    with (
        socat(*ECHO[:-1], listen("tcp", sock_dir), ECHO[-1]) as server,
        path.open("rb") as stdin,
    ):
        result = subprocess.run(
            cat_command(backend, target("tcp", server)),
            stdin=stdin,
            capture_output=True,
            cwd=REPO,
            env=child_env(),
            timeout=TIMEOUT,
            check=False,
        )
        assert server.finish() == 0
    assert result.returncode == 0, describe(result)
    assert result.stdout == (PAYLOAD if source == "file" else b"")
    assert result.stderr == b""


def test_upload(backend: str, kind: Kind, sock_dir: Path) -> None:
    # socat only stores what arrives, until the tool's end of stream.
    stored = sock_dir / "stored.bin"
    with socat("-u", listen(kind, sock_dir), f"CREATE:{stored}") as server:
        result = run_cat(backend, target(kind, server), PAYLOAD)
        assert server.finish() == 0
    assert result.returncode == 0, describe(result)
    assert result.stdout == b""
    assert stored.read_bytes() == PAYLOAD


def test_download_while_input_stays_open(
    backend: str, kind: Kind, sock_dir: Path
) -> None:
    # socat sends a file and closes: the tool exits, though its input is
    # still open (a pipe nobody writes to or closes).
    source = sock_dir / "source.bin"
    source.write_bytes(PAYLOAD)
    with socat("-u", f"OPEN:{source},rdonly", listen(kind, sock_dir)) as server:
        with subprocess.Popen(
            cat_command(backend, target(kind, server)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=child_env(),
        ) as tool:
            try:
                stdout, stderr = tool.communicate(
                    timeout=TIMEOUT
                )  # stdin: never closed
            finally:
                tool.kill()
        assert server.finish() == 0
    assert tool.returncode == 0, stderr
    assert stdout == PAYLOAD
    assert stderr == b""


@pytest.mark.parametrize("peer", ["idle", "not reading"])
def test_ctrl_c(backend: str, sock_dir: Path, peer: str) -> None:
    # Ctrl+C stops the tool at once: while it waits for data, and while its
    # sending waits for a peer that does not read (nothing is flushed then).
    if peer == "idle":
        addresses = [*ECHO[:-1], listen("tcp", sock_dir), ECHO[-1]]
    else:
        # -u: data only goes from an empty pipe to the connection; socat
        # never reads what the tool sends.
        addresses = ["-u", "PIPE", listen("tcp", sock_dir)]
    input_end, feed_end = os.pipe()
    feeder = threading.Thread(target=feed, args=(feed_end, peer == "idle"))
    with (
        socat(*addresses) as server,
        subprocess.Popen(
            cat_command(backend, target("tcp", server)),
            stdin=input_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=child_env(),
        ) as tool,
    ):
        os.close(input_end)
        feeder.start()
        try:
            assert tool.stdout is not None
            if peer == "idle":
                assert tool.stdout.readline() == b"ping\n"  # connected, copying
            else:
                server.wait_for("starting data transfer loop")
                time.sleep(0.5)  # (the buffers fill; the test holds either way)
            tool.send_signal(signal.SIGINT)
            stdout, stderr = tool.communicate(timeout=TIMEOUT)
        finally:
            tool.kill()
            tool.wait(TIMEOUT)
            feeder.join(TIMEOUT)  # its writes fail once the tool is gone
            os.close(feed_end)
    assert tool.returncode == 130, stderr
    assert stderr == b""
    if peer == "idle":
        assert stdout == b""


def feed(fd: int, ping_only: bool) -> None:
    """Write ``ping`` to ``fd``, or 64 MiB (more than the buffers on the way
    hold), until done or the reader is gone."""
    data = b"ping\n" if ping_only else PAYLOAD[: 2**20] * 64
    view = memoryview(data)
    with contextlib.suppress(BrokenPipeError):
        while view:
            view = view[os.write(fd, view) :]


# -- TLS ---------------------------------------------------------------------------


def test_tls_echo(backend: str, certificates: Certificates, tmp_path: Path) -> None:
    # No half-close over TLS: the tool reads on after its input ends, until
    # socat closes -- here when "head" has echoed the whole payload and exits.
    pem = tmp_path / "server.pem"
    pem.write_bytes(
        certificates.server_cert_file.read_bytes()
        + certificates.server_key_file.read_bytes()
    )
    with socat(
        f"OPENSSL-LISTEN:0,bind=127.0.0.1,cert={pem},verify=0",
        f"SYSTEM:head -c {len(PAYLOAD)}",
    ) as server:
        port = server.wait_for(r"listening on AF=2 127\.0\.0\.1:(\d+)").group(1)
        result = run_cat(
            backend,
            ["--tls", "--cafile", str(certificates.ca_file), "localhost", port],
            PAYLOAD,
        )
        assert server.finish() == 0
    assert result.returncode == 0, describe(result)
    assert result.stdout == PAYLOAD
    assert result.stderr == b""


def test_tls_against_s_server(backend: str, certificates: Certificates) -> None:
    # Both ways: s_server prints what it receives, then sends its input and
    # ends with close_notify; the tool, whose input ended long before, reads
    # on until then.
    reply = PAYLOAD[::-1]
    arguments = [
        "--tls",
        "--cafile",
        str(certificates.ca_file),
        "--server-hostname",
        "localhost",
    ]
    with s_server(certificates) as server:
        with subprocess.Popen(
            cat_command(backend, [*arguments, "127.0.0.1", str(server.port)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=child_env(),
        ) as tool:
            try:
                stdout, stderr = exchange_with(tool, server, reply)
            finally:
                tool.kill()
        assert server.finish() == 0, server.errors()
    assert tool.returncode == 0, stderr
    assert stdout == reply
    assert stderr == b""


def exchange_with(
    tool: subprocess.Popen[bytes], server: OpenSSLServer, reply: bytes
) -> tuple[bytes, bytes]:
    """Send PAYLOAD through ``tool`` to s_server, then ``reply`` back; return
    the tool's output once it exits."""
    outputs: list[tuple[bytes, bytes]] = []
    talker = threading.Thread(
        target=lambda: outputs.append(tool.communicate(PAYLOAD, timeout=TIMEOUT))
    )
    talker.start()
    try:
        assert anyio.run(server.wait_received, len(PAYLOAD)) == PAYLOAD
        server.send(reply, then_close=True)
    finally:
        talker.join(TIMEOUT)
    assert outputs, "the tool did not finish"
    return outputs[0]


def test_tls_verifies_the_certificate(
    backend: str, certificates: Certificates, tmp_path: Path
) -> None:
    pem = tmp_path / "server.pem"
    pem.write_bytes(
        certificates.server_cert_file.read_bytes()
        + certificates.server_key_file.read_bytes()
    )
    with socat(
        f"OPENSSL-LISTEN:0,bind=127.0.0.1,cert={pem},verify=0", "PIPE"
    ) as server:
        port = server.wait_for(r"listening on AF=2 127\.0\.0\.1:(\d+)").group(1)
        # The system's authorities do not know trustme's...
        untrusted = run_cat(backend, ["--tls", "localhost", port], b"secret\n")
        server.wait_for(r"(?i)ssl|exiting")
    assert untrusted.returncode == 1
    assert untrusted.stdout == b""
    assert b"CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert untrusted.stderr.count(b"\n") == 1  # one line, no traceback


# -- errors ------------------------------------------------------------------------------


def test_connection_refused(backend: str, sock_dir: Path) -> None:
    with socket_bound_not_listening() as port:
        result = run_cat(backend, ["127.0.0.1", str(port)], b"hello\n")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.startswith(b"python -m portastreams cat: [Errno 111] ")
    assert result.stderr.count(b"\n") == 1
    missing = run_cat(backend, ["--unix", str(sock_dir / "nobody.sock")], b"")
    assert missing.returncode == 1
    assert b"No such file or directory" in missing.stderr


@contextmanager
def socket_bound_not_listening() -> Iterator[int]:
    """A port that refuses connections (bound, so nobody else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give HOST PORT, or --unix PATH"),
        (["localhost"], "give HOST PORT, or --unix PATH"),
        (["localhost", "80", "--unix", "x.sock"], "not both"),
        (["--unix", "x.sock", "--tls"], "--tls with --unix needs --server-hostname"),
        (["--cafile", "ca.pem", "localhost", "443"], "only go with --tls"),
        (["localhost", "https"], "invalid int value: 'https'"),
    ],
)
def test_usage_errors(backend: str, arguments: list[str], message: str) -> None:
    result = run_cat(backend, arguments, b"")
    assert result.returncode == 2
    assert result.stdout == b""
    assert message in result.stderr.decode(), result.stderr
    assert result.stderr.startswith(b"usage: python -m portastreams cat ")
