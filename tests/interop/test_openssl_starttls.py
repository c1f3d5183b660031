"""The STARTTLS examples (``examples/starttls_*.py``) against OpenSSL.

The server: its dialogue is the part of SMTP that upgrades to TLS, so
``openssl s_client -starttls smtp`` drives it as it would a mail server --
greeting, EHLO, STARTTLS, handshake -- and then sends ECHO commands over TLS
1.2 and 1.3, with and without a client certificate. Every reply is checked,
byte for byte, and s_client's exit status tells that the server ended the
session with close_notify.

The client: ``openssl s_server`` cannot speak a plain-text prelude, so the
test puts a small front in the way. It answers the client's plain-text part
of the dialogue as the example server does, up to "220 Ready to start TLS";
from then on it relays bytes, unchanged, between the client and s_server, so
the TLS handshake and everything after it is between the client's
``start_tls()`` and OpenSSL. s_server prints what the client sent over TLS;
what it sends back comes from its input.
"""

from __future__ import annotations

import functools
import importlib
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any

import anyio
import pytest
from openssl_programs import openssl, s_server
from subprocesses import BACKEND_NAMES, EXAMPLES, Background, describe, run_python
from tls_certificates import CLIENT_NAME, Certificates, make_certificates

import portastreams

#: Deadline for each exchange.
TIMEOUT = 30.0
VERSIONS = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def import_example(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module: ModuleType = importlib.import_module(name)
    return module


def messages(count: int) -> list[str]:
    return [f"message {i:05d} {'x' * (i % 300)}" for i in range(count)]


# -- the server against s_client -starttls smtp --------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("client_certificate", [False, True], ids=["", "client-cert"])
async def test_server_against_s_client_starttls_smtp(
    certificates: Certificates,
    version: str,
    client_certificate: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    starttls_server = import_example("starttls_server", monkeypatch)
    context = starttls_server.server_context(
        str(certificates.server_cert_file),
        str(certificates.server_key_file),
        str(certificates.ca_file) if client_certificate else None,
    )
    handler = functools.partial(
        starttls_server.handle, context=context, name="localhost"
    )
    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sent = messages(2000)  # ~ 320 KB
    options = [VERSIONS[version]]
    if client_certificate:
        options += ["-cert", str(certificates.client_file)]
    async with server:
        with anyio.fail_after(TIMEOUT):
            result = await anyio.run_process(
                [
                    openssl(),
                    "s_client",
                    "-starttls",
                    "smtp",
                    "-name",
                    "openssl.example",  # what it says after EHLO
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-CAfile",
                    str(certificates.ca_file),
                    "-verify_return_error",
                    "-verify_hostname",
                    "localhost",
                    "-brief",
                    "-ign_eof",
                    "-nocommands",
                    "-crlf",  # its input's lines end with CRLF on the wire
                    *options,
                ],
                input=(
                    "EHLO openssl.example\n"
                    + "".join(f"ECHO {message}\n" for message in sent)
                    + "QUIT\n"
                ).encode(),
                check=False,
            )
    report = result.stderr.decode(errors="replace")
    # 0: the server ended the session with close_notify, after every byte.
    assert result.returncode == 0, report
    assert f"Protocol version: {version}" in report
    assert "Verification: OK" in report
    who = f" as {CLIENT_NAME}" if client_certificate else ""
    assert (
        result.stdout
        == (
            f"250 localhost hello openssl.example, over {version}{who}\r\n"
            + "".join(f"250 {message}\r\n" for message in sent)
            + "221 Bye\r\n"
        ).encode()
    )
    log = capsys.readouterr().out
    certificate = CLIENT_NAME if client_certificate else "no client certificate"
    assert re.fullmatch(rf"127\.0\.0\.1:\d+: {version}, {certificate}\n", log), log


@pytest.mark.anyio
async def test_server_refuses_echo_in_plain_text(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    starttls_server = import_example("starttls_server", monkeypatch)
    context = starttls_server.server_context(
        str(certificates.server_cert_file), str(certificates.server_key_file), None
    )
    handler = functools.partial(
        starttls_server.handle, context=context, name="localhost"
    )
    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with anyio.fail_after(TIMEOUT):
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"ECHO secret\r\nNOOP\r\nHELP\r\nQUIT\r\n")
            replies = await reader.read()
            writer.close()
            await writer.wait_closed()
    assert replies == (
        b"220 localhost portastreams STARTTLS example\r\n"
        b"530 Must issue a STARTTLS command first\r\n"
        b"250 OK\r\n"
        b"500 Unknown command\r\n"
        b"221 Bye\r\n"
    )


@pytest.mark.anyio
async def test_server_refuses_plain_text_after_starttls(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A command sent in plain text right behind STARTTLS would otherwise be
    # read after the upgrade, as if it had come encrypted (the reader keeps
    # what it has buffered, as asyncio's does): the server refuses.
    starttls_server = import_example("starttls_server", monkeypatch)
    context = starttls_server.server_context(
        str(certificates.server_cert_file), str(certificates.server_key_file), None
    )
    handler = functools.partial(
        starttls_server.handle, context=context, name="localhost"
    )
    server = await portastreams.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with anyio.fail_after(TIMEOUT):
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            writer.write(b"EHLO x\r\nSTARTTLS\r\nECHO injected\r\n")
            replies = await reader.read()
            writer.close()
            await writer.wait_closed()
    assert replies == (
        b"220 localhost portastreams STARTTLS example\r\n"
        b"250-localhost hello x\r\n"
        b"250 STARTTLS\r\n"
        b"501 Nothing may follow STARTTLS before the handshake\r\n"
    )


# -- the client against s_server, behind a plain-text front ----------------------


def read_line(connection: socket.socket) -> bytes:
    """One line, read a byte at a time: nothing after it is taken off the socket."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = connection.recv(1)
        if not byte:
            break
        line += byte
    return bytes(line)


class PlainTextFront:
    """Answers the plain-text part of the dialogue, then relays to s_server.

    ``said`` is what the client sent in plain text.
    """

    def __init__(self, tls_port: int) -> None:
        self.tls_port = tls_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.said: list[bytes] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
            with client:
                client.sendall(b"220 front ready\r\n")
                self.said.append(read_line(client))  # EHLO
                client.sendall(b"250-front hello\r\n250 STARTTLS\r\n")
                self.said.append(read_line(client))  # STARTTLS
                client.sendall(b"220 Ready to start TLS\r\n")
                with socket.create_connection(
                    ("127.0.0.1", self.tls_port), timeout=TIMEOUT
                ) as upstream:
                    relays = [
                        threading.Thread(
                            target=relay, args=(client, upstream), daemon=True
                        ),
                        threading.Thread(
                            target=relay, args=(upstream, client), daemon=True
                        ),
                    ]
                    for thread in relays:
                        thread.start()
                    for thread in relays:
                        thread.join(TIMEOUT)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.listener.close()

    def finish(self) -> None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        assert self.errors == []


def relay(source: socket.socket, destination: socket.socket) -> None:
    """Copy until the end of ``source``; then end ``destination``'s sending side."""
    with suppress(OSError):  # a reset: the test sees it at the other end
        while data := source.recv(65536):
            destination.sendall(data)
    with suppress(OSError):
        destination.shutdown(socket.SHUT_WR)


@contextmanager
def front_of(tls_port: int) -> Iterator[PlainTextFront]:
    front = PlainTextFront(tls_port)
    try:
        yield front
    finally:
        front.listener.close()
        front.thread.join(TIMEOUT)


@pytest.mark.anyio
@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("client_certificate", [False, True], ids=["", "client-cert"])
async def test_client_against_s_server(
    certificates: Certificates,
    version: str,
    client_certificate: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    starttls_client = import_example("starttls_client", monkeypatch)
    sent = messages(1000)
    answers = [f"{message[::-1]}" for message in sent]  # s_server's: anything
    options = [VERSIONS[version]]
    context = certificates.client_context()
    if client_certificate:
        options += ["-Verify", "1", "-CAfile", str(certificates.ca_file)]
        context = certificates.client_context_with_certificate()
    with s_server(certificates, *options) as server, front_of(server.port) as front:
        # s_server sends its input as soon as the handshake is over; the
        # client reads the replies in order all the same.
        server.send(
            b"250 openssl hello\r\n"
            + b"".join(f"250 {answer}\r\n".encode() for answer in answers)
            + b"221 Bye\r\n"
        )
        with anyio.fail_after(TIMEOUT):
            got = await starttls_client.run_session(
                "127.0.0.1", front.port, sent, context, "localhost"
            )
            # The client closed (close_notify): s_server ends, the front too.
            status = await anyio.to_thread.run_sync(server.finish)
        front.finish()
    assert got == answers
    assert front.said == [b"EHLO client.example\r\n", b"STARTTLS\r\n"]
    assert server.received() == (
        b"EHLO client.example\r\n"
        + b"".join(f"ECHO {message}\r\n".encode() for message in sent)
        + b"QUIT\r\n"
    )
    assert status == 0, server.errors()
    if client_certificate:
        assert "verify return:1" in server.errors()
    transcript = capsys.readouterr().out
    assert f"-- TLS: {version}, " in transcript
    assert transcript.endswith("C: QUIT\nS: 221 Bye\n")


@pytest.mark.anyio
async def test_client_verifies_the_server_name(
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    starttls_client = import_example("starttls_client", monkeypatch)
    with s_server(certificates) as server, front_of(server.port) as front:
        with anyio.fail_after(TIMEOUT), pytest.raises(ssl.SSLCertVerificationError):
            await starttls_client.run_session(
                "127.0.0.1",
                front.port,
                ["hello"],
                certificates.client_context(),
                "mail.example.com",  # the certificate is for localhost
            )
        front.finish()
    assert server.received() == b""
    assert "S: 220 Ready to start TLS" in capsys.readouterr().out


# -- the two examples as programs -----------------------------------------------


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_example_programs(certificates: Certificates, backend: str) -> None:
    openssl()  # the test belongs with the others: same requirements
    with Background(
        [
            str(EXAMPLES / "starttls_server.py"),
            "--backend",
            backend,
            "--port",
            "0",
            "--certfile",
            str(certificates.server_cert_file),
            "--keyfile",
            str(certificates.server_key_file),
        ]
    ) as server:
        serving = server.wait_for_line(lambda line: line.startswith("Serving STARTTLS"))
        match = re.fullmatch(r"Serving STARTTLS on 127\.0\.0\.1:(\d+)\n", serving)
        assert match, serving
        client = run_python(
            [
                str(EXAMPLES / "starttls_client.py"),
                "--backend",
                backend,
                "--port",
                match.group(1),
                "--cafile",
                str(certificates.ca_file),
                "hello",
                "two words",
            ]
        )
        assert client.returncode == 0, describe(client)
        server.wait_for_line(lambda line: "TLSv1.3, no client certificate" in line)
        assert server.interrupt() == 0, server.output()
    assert client.stderr == ""
    lines = client.stdout.splitlines()
    assert lines[:6] == [
        "S: 220 localhost portastreams STARTTLS example",
        "C: EHLO client.example",
        "S: 250-localhost hello client.example",
        "S: 250 STARTTLS",
        "C: STARTTLS",
        "S: 220 Ready to start TLS",
    ]
    assert lines[6].startswith("-- TLS: TLSv1.3, ")
    assert lines[7:] == [
        "C: EHLO client.example",
        "S: 250 localhost hello client.example, over TLSv1.3",
        "C: ECHO hello",
        "S: 250 hello",
        "C: ECHO two words",
        "S: 250 two words",
        "C: QUIT",
        "S: 221 Bye",
    ]
    assert server.stdout_lines[-1] == "stopped\n"
    assert server.stderr_lines == []
