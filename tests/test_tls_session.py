"""``TLSSession`` without an event loop, and asyncio's TLS timeout policy.

A :class:`~portastreams._tls.TLSSession` is sans-I/O: ciphertext goes in with
``receive()`` and comes out of ``outgoing()``/``encrypt()``. These tests pump
the bytes between a client session and a server session by hand, as h11's
tests drive its receive buffer, so every step of a handshake, a transfer and
a shutdown can be looked at. The timeout policy is compared with what
CPython's own ``asyncio.sslproto.SSLProtocol`` accepts and defaults to.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import sys
from typing import Any

import pytest
from certificates import client_context, server_context
from reference import outcome

from portastreams._tls import (
    HandshakeTimeoutError,
    TLSSession,
    handshake_timeout,
    native_shutdown_option,
    shutdown_timeout,
    translate_handshake_timeout,
)

#: CPython's SSL protocol, used through private names the stubs do not know.
sslproto: Any = asyncio.sslproto

# -- the policy, compared with asyncio's SSLProtocol ----------------------------


def asyncio_protocol(
    loop: asyncio.AbstractEventLoop,
    handshake: float | None = None,
    shutdown: float | None = None,
) -> Any:
    """CPython's SSL protocol for a client connection that never connects."""
    protocol = sslproto.SSLProtocol(
        loop,
        asyncio.Protocol(),
        client_context(),
        None,
        server_hostname="localhost",
        ssl_handshake_timeout=handshake,
        ssl_shutdown_timeout=shutdown,
    )
    # Its application transport was never used: it need not warn when dropped.
    protocol._get_app_transport()._closed = True
    return protocol


def asyncio_timeouts(
    handshake: float | None, shutdown: float | None
) -> tuple[float, float] | tuple[str, str]:
    """The timeouts asyncio's SSL protocol ends up with, or its error."""
    loop = asyncio.new_event_loop()
    try:
        protocol = asyncio_protocol(loop, handshake, shutdown)
    except ValueError as exc:
        return outcome(exc)
    finally:
        loop.close()
    return (
        float(protocol._ssl_handshake_timeout),
        float(protocol._ssl_shutdown_timeout),
    )


def our_timeouts(
    handshake: float | None, shutdown: float | None
) -> tuple[float, float] | tuple[str, str]:
    try:
        return (handshake_timeout(handshake), shutdown_timeout(shutdown))
    except ValueError as exc:
        return outcome(exc)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio's SSLProtocol takes ssl_shutdown_timeout from 3.11 on: no oracle",
)
@pytest.mark.parametrize(
    ("handshake", "shutdown"),
    [
        (None, None),
        (0.5, None),
        (None, 0.5),
        (2, 3),
        (1e-9, 1e-9),
        (0, None),
        (-1, None),
        (None, 0),
        (None, -0.5),
        (0, 0),
    ],
)
def test_timeouts_match_asyncio(
    handshake: float | None, shutdown: float | None
) -> None:
    assert our_timeouts(handshake, shutdown) == asyncio_timeouts(handshake, shutdown)


def test_timeouts_are_floats() -> None:
    assert type(handshake_timeout(2)) is float
    assert type(shutdown_timeout(3)) is float


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the option is new in 3.11")
@pytest.mark.parametrize("value", [None, 0.25, 7])
def test_native_shutdown_option(value: float | None) -> None:
    expected = asyncio_timeouts(None, value)
    assert native_shutdown_option(value) == {"ssl_shutdown_timeout": expected[1]}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the option is new in 3.11")
def test_native_shutdown_option_validates() -> None:
    with pytest.raises(ValueError, match="got 0") as caught:
        native_shutdown_option(0)
    assert outcome(caught.value) == asyncio_timeouts(None, 0)


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.10's loops only")
def test_native_shutdown_option_on_python_3_10() -> None:
    assert native_shutdown_option(None) == {}
    with pytest.raises(NotImplementedError, match=r"Python 3\.11"):
        native_shutdown_option(1.0)


def asyncio_abort_message(timeout: float) -> str:
    """The message of the error asyncio's handshake timer aborts with."""
    loop = asyncio.new_event_loop()
    try:
        protocol = asyncio_protocol(loop, timeout)
        seen: list[BaseException] = []
        protocol._fatal_error = lambda exc, message="": seen.append(exc)
        protocol._state = sslproto.SSLProtocolState.DO_HANDSHAKE
        protocol._check_handshake_timeout()
    finally:
        loop.close()
    (error,) = seen
    assert isinstance(error, ConnectionAbortedError)
    return str(error)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio's SSLProtocol takes ssl_shutdown_timeout from 3.11 on: no oracle",
)
@pytest.mark.parametrize("timeout", [5, 0.25])
def test_handshake_timeout_error_says_what_asyncio_says(timeout: float) -> None:
    message = asyncio_abort_message(timeout)
    with pytest.raises(HandshakeTimeoutError) as caught:
        translate_handshake_timeout(ConnectionAbortedError(message), timeout)
    error = caught.value
    assert str(error) == asyncio_abort_message(handshake_timeout(timeout))
    assert isinstance(error, ConnectionAbortedError)
    assert isinstance(error, TimeoutError)
    assert isinstance(error.__cause__, ConnectionAbortedError)
    assert str(error.__cause__) == message


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="asyncio's SSLProtocol takes ssl_shutdown_timeout from 3.11 on: no oracle",
)
def test_handshake_timeout_error_with_the_default_timeout() -> None:
    message = asyncio_abort_message(60.0)
    with pytest.raises(HandshakeTimeoutError) as caught:
        translate_handshake_timeout(ConnectionAbortedError(message), None)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "error",
    [
        ConnectionAbortedError("the peer went away"),
        ConnectionResetError("SSL handshake is taking longer than 5 seconds"),
        TimeoutError("SSL handshake is taking longer than 5 seconds"),
        ConnectionAbortedError("an SSL handshake is taking longer than 5 seconds"),
    ],
)
def test_other_errors_are_not_handshake_timeouts(error: BaseException) -> None:
    translate_handshake_timeout(error, 5.0)  # raises nothing


# -- the session, driven by hand -------------------------------------------------


def pump(sender: TLSSession, receiver: TLSSession) -> int:
    """Move what ``sender`` wants sent into ``receiver``; how many bytes."""
    data = sender.outgoing()
    if data:
        receiver.receive(data)
    return len(data)


def handshake(client: TLSSession, server: TLSSession) -> int:
    """Run both handshakes to completion; the number of flights it took."""
    flights = 0
    client_done = server_done = False
    while not (client_done and server_done):
        client_done = client.do_handshake()
        flights += pump(client, server) > 0
        server_done = server.do_handshake()
        flights += pump(server, client) > 0
        assert flights < 20, "the handshake does not progress"
    client_done = client.do_handshake()
    pump(client, server)
    return flights


def new_pair(hostname: str | None = "localhost") -> tuple[TLSSession, TLSSession]:
    client = TLSSession(client_context(), server_side=False, hostname=hostname)
    server = TLSSession(server_context(), server_side=True, hostname="ignored")
    return client, server


def connected_pair() -> tuple[TLSSession, TLSSession]:
    client, server = new_pair()
    handshake(client, server)
    return client, server


def test_a_new_session_has_nothing_to_send_until_it_starts() -> None:
    client, server = new_pair()
    assert client.outgoing() == b""
    assert server.outgoing() == b""
    assert client.handshake_done is False
    assert server.handshake_done is False


def test_handshake_steps() -> None:
    client, server = new_pair()
    assert client.do_handshake() is False
    assert not client.handshake_done
    hello = client.outgoing()
    assert hello[:1] == b"\x16"  # a TLS handshake record: the ClientHello
    assert client.outgoing() == b""  # taken once
    assert server.do_handshake() is False  # nothing received yet
    assert server.outgoing() == b""
    server.receive(hello)
    handshake(client, server)
    assert (client.handshake_done, server.handshake_done) == (True, True)
    assert client.ssl_object.server_side is False
    assert server.ssl_object.server_side is True


def test_client_sends_the_hostname_and_the_server_none() -> None:
    client, server = new_pair("localhost")
    assert client.ssl_object.server_hostname == "localhost"
    assert server.ssl_object.server_hostname is None


def test_an_empty_hostname_is_no_hostname() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = TLSSession(context, server_side=False, hostname="")
    assert client.ssl_object.server_hostname is None


def test_a_wrong_hostname_fails_the_handshake() -> None:
    client, server = new_pair("example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(client, server)
    assert not client.handshake_done


def test_application_data_both_ways() -> None:
    client, server = connected_pair()
    server.receive(client.encrypt(b"hello"))
    assert server.read_plaintext(1024) == ([b"hello"], False, None)
    client.receive(server.encrypt(bytearray(b"world")))
    assert client.read_plaintext(1024) == ([b"world"], False, None)
    assert client.read_plaintext(1024) == ([], False, None)  # nothing more yet


def test_encrypt_takes_any_bytes_like_object_and_all_of_it() -> None:
    client, server = connected_pair()
    data = bytes(range(256)) * 1000  # several TLS records
    ciphertext = client.encrypt(memoryview(data))
    assert client.outgoing() == b""  # everything was handed out
    server.receive(ciphertext)
    chunks, closed, _ = server.read_plaintext(len(data))
    assert b"".join(chunks) == data
    assert not closed


def test_empty_write_makes_no_ciphertext() -> None:
    client, _server = connected_pair()
    assert client.encrypt(b"") == b""


def test_read_plaintext_gives_chunks_of_at_most_max_size() -> None:
    client, server = connected_pair()
    server.receive(client.encrypt(b"abcdefghij"))
    chunks, closed, _ = server.read_plaintext(3)
    assert chunks == [b"abc", b"def", b"ghi", b"j"]
    assert not closed


def test_partial_record_waits_for_the_rest() -> None:
    client, server = connected_pair()
    ciphertext = client.encrypt(b"one record")
    server.receive(ciphertext[:-1])
    assert server.read_plaintext(1024) == ([], False, None)
    server.receive(ciphertext[-1:])
    assert server.read_plaintext(1024) == ([b"one record"], False, None)


def test_close_notify_is_read_as_the_end() -> None:
    client, server = connected_pair()
    server.receive(client.encrypt(b"last words") + client.close_notify())
    assert server.read_plaintext(1024) == ([b"last words"], True, None)


def test_close_notify_answered() -> None:
    client, server = connected_pair()
    alert = client.close_notify()
    assert alert  # the close_notify alert
    server.receive(alert)
    assert server.read_plaintext(1024) == ([], True, None)
    answer = server.close_notify()
    assert answer
    client.receive(answer)
    assert client.read_plaintext(1024) == ([], True, None)
    # A second shutdown is harmless and sends nothing.
    assert client.close_notify() == b""


def test_close_notify_before_the_handshake_sends_nothing() -> None:
    client, _server = new_pair()
    assert client.close_notify() == b""


def test_ragged_eof_is_read_as_the_end() -> None:
    client, server = connected_pair()
    server.receive(client.encrypt(b"data"))
    server.receive_eof()
    assert server.read_plaintext(1024) == ([b"data"], True, None)


def test_eof_in_the_middle_of_a_record_is_the_end() -> None:
    client, server = connected_pair()
    server.receive(client.encrypt(b"torn")[:-3])
    server.receive_eof()
    assert server.read_plaintext(1024) == ([], True, None)


def test_corrupt_ciphertext_is_an_ssl_error() -> None:
    client, server = connected_pair()
    record = bytearray(client.encrypt(b"payload"))
    record[-1] ^= 0xFF
    server.receive(bytes(record))
    chunks, closed, error = server.read_plaintext(1024)
    assert (chunks, closed) == ([], False)
    assert isinstance(error, ssl.SSLError)


def test_what_came_before_a_corrupt_record_is_kept() -> None:
    client, server = connected_pair()
    good = client.encrypt(b"intact")
    record = bytearray(client.encrypt(b"payload"))
    record[-1] ^= 0xFF
    server.receive(good + bytes(record))
    chunks, closed, error = server.read_plaintext(1024)
    assert (chunks, closed) == ([b"intact"], False)
    assert isinstance(error, ssl.SSLError)


def test_plaintext_garbage_fails_the_handshake() -> None:
    _client, server = new_pair()
    server.receive(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ssl.SSLError):
        server.do_handshake()
    assert not server.handshake_done
