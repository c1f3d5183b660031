"""portastreams' TLS client and TLS server against OpenSSL's own, ``s_server`` and ``s_client``.

Client side: ``open_connection(ssl=...)`` talks to ``openssl s_server`` over
TLS 1.2 and 1.3, with and without a client certificate, and the server ends
the connection the two ways servers do: with TLS's ``close_notify``, or by
just closing the socket. Each scenario runs twice -- once with CPython's own
``asyncio.open_connection`` (in a thread, against its own s_server), once with
portastreams on the backend under test -- and the two must agree on
everything: the bytes, the end of the stream, the exceptions.

Server side: ``start_server(ssl=...)`` answers ``openssl s_client``, which
checks the certificate, reports the session, and exits with status 0 only if
the server ended the session with ``close_notify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import pytest
from openssl_programs import OpenSSLServer, openssl, s_server
from tls_certificates import CLIENT_NAME, Certificates, make_certificates

import portastreams

pytestmark = pytest.mark.anyio

#: Deadline for each scenario.
TIMEOUT = 30.0

#: What each side sends: every byte value, 256 KiB and a bit, not aligned.
CLIENT_PAYLOAD = bytes(range(256)) * 1024 + b"client's last bytes"
SERVER_PAYLOAD = bytes(reversed(range(256))) * 1031 + b"server's last bytes"

VERSIONS = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
Ending = Literal["close_notify", "socket closed"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


# -- the client against s_server ----------------------------------------------------

Opener = Callable[..., Awaitable[tuple[Any, Any]]]


@dataclass(frozen=True)
class ClientOutcome:
    """What a client saw, in terms asyncio and portastreams share."""

    version: str
    received_whole: bool  # the server's payload arrived, byte for byte
    delivered_whole: bool  # s_server printed the client's payload, byte for byte
    after_end: str  # what read() returned, or raised, after the server's end
    at_eof: bool
    wait_closed: str  # "returned", or the exception wait_closed() raised


async def client_scenario(
    open_connection: Opener,
    server: OpenSSLServer,
    context: ssl.SSLContext,
    ending: Ending,
) -> ClientOutcome:
    """Exchange the payloads with s_server, which then ends the connection."""
    reader, writer = await open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    version = writer.get_extra_info("ssl_object").version()
    writer.write(CLIENT_PAYLOAD)
    server.send(SERVER_PAYLOAD)
    received = await reader.readexactly(len(SERVER_PAYLOAD))
    delivered = await server.wait_received(len(CLIENT_PAYLOAD))
    if ending == "close_notify":
        server.close_input()
    else:
        server.kill()
    try:
        after_end = repr(await reader.read())
    except Exception as exc:
        after_end = type(exc).__name__
    at_eof = reader.at_eof()
    writer.close()
    try:
        await writer.wait_closed()
    except Exception as exc:
        closed = type(exc).__name__
    else:
        closed = "returned"
    return ClientOutcome(
        version,
        received == SERVER_PAYLOAD,
        delivered == CLIENT_PAYLOAD,
        after_end,
        at_eof,
        closed,
    )


async def with_asyncio_client(
    scenario: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """Run ``scenario(asyncio.open_connection, *args)`` with CPython's asyncio,
    in a thread (whatever backend this test runs on)."""

    async def reference() -> Any:
        return await asyncio.wait_for(scenario(asyncio.open_connection, *args), TIMEOUT)

    return await anyio.to_thread.run_sync(asyncio.run, reference())


@pytest.mark.parametrize("ending", ["close_notify", "socket closed"])
@pytest.mark.parametrize("version", list(VERSIONS))
async def test_client_against_s_server(
    certificates: Certificates, version: str, ending: Ending
) -> None:
    context = certificates.client_context()
    with s_server(certificates, VERSIONS[version]) as server:
        expected = await with_asyncio_client(client_scenario, server, context, ending)
    with s_server(certificates, VERSIONS[version]) as server:
        with anyio.fail_after(TIMEOUT):
            outcome = await client_scenario(
                portastreams.open_connection, server, context, ending
            )
        status = server.finish()
    assert outcome == expected
    assert outcome.version == version
    assert outcome.received_whole
    assert outcome.delivered_whole
    assert outcome.after_end == "b''"  # as asyncio: an end either way
    assert outcome.at_eof
    if ending == "close_notify":
        assert status == 0, server.errors()


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_client_certificate(certificates: Certificates, version: str) -> None:
    context = certificates.client_context_with_certificate()
    options = [VERSIONS[version], "-Verify", "1", "-CAfile", str(certificates.ca_file)]
    with s_server(certificates, *options) as server:
        expected = await with_asyncio_client(
            client_scenario, server, context, "close_notify"
        )
    with s_server(certificates, *options) as server:
        with anyio.fail_after(TIMEOUT):
            outcome = await client_scenario(
                portastreams.open_connection, server, context, "close_notify"
            )
        assert server.finish() == 0, server.errors()
    assert outcome == expected
    assert outcome.received_whole
    assert outcome.delivered_whole
    assert "verify return:1" in server.errors()


@dataclass(frozen=True)
class RefusedOutcome:
    """Where a client without the required certificate failed, and how."""

    failed_at: str
    error: str
    reason: str | None


async def refused_scenario(
    open_connection: Opener, server: OpenSSLServer, context: ssl.SSLContext
) -> RefusedOutcome:
    step = "connect"
    try:
        reader, writer = await open_connection(
            "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
        )
        try:
            # TLS 1.3 clients finish their handshake before the server has
            # checked their certificate: the refusal comes with the first read.
            # (Nothing is written first: s_server would close with unread
            # data, and the kernel would send a reset that may overtake the
            # alert.)
            step = "read"
            await reader.read(100)
            step = "no failure"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    except ssl.SSLError as exc:
        return RefusedOutcome(step, type(exc).__name__, exc.reason)
    except OSError as exc:
        return RefusedOutcome(step, type(exc).__name__, None)
    return RefusedOutcome(step, "", None)


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_client_without_a_required_certificate(
    certificates: Certificates, version: str
) -> None:
    context = certificates.client_context()
    options = [VERSIONS[version], "-Verify", "1", "-CAfile", str(certificates.ca_file)]
    with s_server(certificates, *options) as server:
        expected = await with_asyncio_client(refused_scenario, server, context)
    # s_server closes right after its alert; under load the kernel's reset
    # can overtake the alert (the same race asyncio's client can lose), so a
    # reset is retried a few times before it counts.
    for _attempt in range(5):
        with s_server(certificates, *options) as server:
            with anyio.fail_after(TIMEOUT):
                outcome = await refused_scenario(
                    portastreams.open_connection, server, context
                )
        if outcome.error != "ConnectionResetError":
            break
    assert outcome == expected
    assert outcome.failed_at == {"TLSv1.2": "connect", "TLSv1.3": "read"}[version]


# -- the server against s_client ----------------------------------------------------

ServerStarter = Callable[..., Awaitable[Any]]


@dataclass
class Session:
    """What the server's handler saw of one connection."""

    version: str
    client: str | None
    lines: int = 0


def echo_handler(sessions: list[Session]) -> Callable[[Any, Any], Awaitable[None]]:
    """Echo lines until ``bye``, then close (over TLS: flush, close_notify).

    It closes explicitly, as asyncio's servers do not close a connection when
    its handler returns (portastreams' do).
    """

    async def handle(reader: Any, writer: Any) -> None:
        certificate = writer.get_extra_info("peercert")
        names = [name for _, name in (certificate or {}).get("subjectAltName", ())]
        session = Session(
            writer.get_extra_info("ssl_object").version(), names[0] if names else None
        )
        sessions.append(session)
        async for line in reader:
            writer.write(line)
            await writer.drain()
            session.lines += 1
            if line == b"bye\n":
                break
        writer.close()
        await writer.wait_closed()

    return handle


def client_lines(count: int) -> bytes:
    """``count`` lines of text (s_client's input), then ``bye``."""
    lines = (b"line %06d %s\n" % (i, b"x" * (i % 200)) for i in range(count))
    return b"".join(lines) + b"bye\n"


@dataclass(frozen=True)
class ClientReport:
    """How one ``openssl s_client`` run went."""

    status: int
    received: bytes
    version: str | None  # the protocol version it reported
    verified: bool  # it verified the server's certificate and name
    unexpected_eof: bool  # the server closed without close_notify


async def s_client(
    port: int, certificates: Certificates, data: bytes, *options: str
) -> ClientReport:
    """Run ``openssl s_client`` with ``data`` as its input, until the server closes."""
    result = await anyio.run_process(
        [
            openssl(),
            "s_client",
            "-brief",
            "-ign_eof",  # wait for the server to close
            "-nocommands",  # input lines are data, whatever their first letter
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(certificates.ca_file),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            *options,
        ],
        input=data,
        check=False,
    )
    report = result.stderr.decode(errors="replace")
    version = re.search(r"^Protocol version: (\S+)$", report, re.MULTILINE)
    return ClientReport(
        result.returncode,
        result.stdout,
        version.group(1) if version else None,
        "Verification: OK" in report,
        "unexpected eof while reading" in report,
    )


@dataclass(frozen=True)
class ServerOutcome:
    reports: list[ClientReport]
    sessions: list[Session]


async def server_scenario(
    start_server: ServerStarter,
    certificates: Certificates,
    require_client_certificate: bool,
    runs: list[tuple[bytes, list[str]]],
) -> ServerOutcome:
    """Serve TLS; run s_client once per ``(input, options)``, one after the other."""
    sessions: list[Session] = []
    context = certificates.server_context(
        require_client_certificate=require_client_certificate
    )
    server = await start_server(echo_handler(sessions), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reports = [
            await s_client(port, certificates, data, *options) for data, options in runs
        ]
    return ServerOutcome(reports, sessions)


async def compare_servers(
    certificates: Certificates,
    require_client_certificate: bool,
    runs: list[tuple[bytes, list[str]]],
) -> ServerOutcome:
    """The scenario with asyncio's ``start_server`` (in a thread) and with
    portastreams' (on this test's backend); they must agree. Returns the latter."""
    args = (certificates, require_client_certificate, runs)
    expected = await with_asyncio_server(server_scenario, *args)
    with anyio.fail_after(TIMEOUT):
        outcome = await server_scenario(portastreams.start_server, *args)
    assert outcome == expected
    return outcome


async def with_asyncio_server(
    scenario: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """Run ``scenario(asyncio.start_server, *args)`` with CPython's asyncio, in a thread."""

    async def reference() -> Any:
        return await asyncio.wait_for(scenario(asyncio.start_server, *args), TIMEOUT)

    return await anyio.to_thread.run_sync(asyncio.run, reference())


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("client_certificate", [False, True], ids=["", "client-cert"])
async def test_server_against_s_client(
    certificates: Certificates, version: str, client_certificate: bool
) -> None:
    data = client_lines(3000)  # ~320 KB
    options = [VERSIONS[version]]
    if client_certificate:
        options += ["-cert", str(certificates.client_file)]
    outcome = await compare_servers(certificates, client_certificate, [(data, options)])
    (report,) = outcome.reports
    # Exit status 0, no "unexpected eof": the server ended with close_notify,
    # after every byte.
    assert report == ClientReport(0, data, version, True, False)
    assert outcome.sessions == [
        Session(version, CLIENT_NAME if client_certificate else None, 3001)
    ]


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_server_refuses_a_client_without_certificate(
    certificates: Certificates, version: str
) -> None:
    # The handshake fails in the server, which carries on serving. The refused
    # client sends nothing (with TLS 1.3 it would, right after its side of
    # the handshake; the server would close with that data unread, and the
    # kernel would answer with a reset or not, depending on timing).
    data = b"hello\nbye\n"
    with_certificate = [VERSIONS[version], "-cert", str(certificates.client_file)]
    outcome = await compare_servers(
        certificates, True, [(b"", [VERSIONS[version]]), (data, with_certificate)]
    )
    refused, served = outcome.reports
    assert refused.status != 0
    assert refused.received == b""
    assert refused.unexpected_eof  # as asyncio: no alert, the socket is closed
    assert served == ClientReport(0, data, version, True, False)
    assert [session.client for session in outcome.sessions] == [CLIENT_NAME]
