"""TLS as a sans-I/O state machine, and asyncio's TLS policy.

:class:`TLSSession` wraps an ``ssl.SSLObject`` between two memory BIOs, the
way asyncio's ``sslproto`` does: every call is synchronous, takes ciphertext
in and hands ciphertext out, and performs no I/O. The transport that owns a
session is the only code that calls it, so one task at a time drives the SSL
object by construction, and ciphertext leaves in exactly the order the SSL
object produced it.

Policy (asyncio's):

* Verification is on unless the caller's context turns it off: ``ssl=True``
  means ``ssl.create_default_context()``.
* A handshake that does not finish within ``ssl_handshake_timeout`` (default
  60 s) raises :class:`HandshakeTimeoutError`, which is both asyncio's
  ``ConnectionAbortedError`` and a ``TimeoutError``; the socket is closed.
* A peer that hangs up during the handshake is a ``ConnectionResetError``.
* A peer that closes the TCP connection without a TLS ``close_notify`` is
  read as a normal end of stream, as asyncio does.
* Closing flushes the application data, sends ``close_notify`` and waits up to
  ``ssl_shutdown_timeout`` (default 30 s) for the peer to answer or hang up.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
from typing import Final

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "HandshakeTimeoutError",
    "TLSSession",
    "handshake_timeout",
    "native_shutdown_option",
    "shutdown_timeout",
    "translate_handshake_timeout",
]

#: asyncio's default ``ssl_handshake_timeout``.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 60.0
#: asyncio's default ``ssl_shutdown_timeout``.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0


class HandshakeTimeoutError(ConnectionAbortedError, TimeoutError):
    """The TLS handshake did not finish within ``ssl_handshake_timeout``.

    asyncio raises ``ConnectionAbortedError`` here, which ``except
    ConnectionError`` catches; code written for AnyIO or trio expects a
    ``TimeoutError``. This exception is both.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(
            f"SSL handshake is taking longer than {timeout} seconds: "
            f"aborting the connection"
        )


def handshake_timeout(value: float | None) -> float:
    """Validate ``ssl_handshake_timeout`` and apply asyncio's default."""
    if value is None:
        return DEFAULT_HANDSHAKE_TIMEOUT
    if value <= 0:
        raise ValueError(
            f"ssl_handshake_timeout should be a positive number, got {value}"
        )
    return float(value)


def shutdown_timeout(value: float | None) -> float:
    """Validate ``ssl_shutdown_timeout`` and apply asyncio's default."""
    if value is None:
        return DEFAULT_SHUTDOWN_TIMEOUT
    if value <= 0:
        raise ValueError(
            f"ssl_shutdown_timeout should be a positive number, got {value}"
        )
    return float(value)


def native_shutdown_option(value: float | None) -> dict[str, float]:
    """``ssl_shutdown_timeout`` for asyncio's loop methods (Python 3.11+ only).

    Python 3.10's event loops have no such option: asking for one there is an
    error rather than a silently ignored setting.
    """
    timeout = shutdown_timeout(value)
    if sys.version_info >= (3, 11):
        return {"ssl_shutdown_timeout": timeout}
    if value is not None:
        raise NotImplementedError(
            "ssl_shutdown_timeout needs Python 3.11 or later on asyncio"
        )
    return {}


def translate_handshake_timeout(exc: BaseException, timeout: float | None) -> None:
    """Raise :class:`HandshakeTimeoutError` for asyncio's handshake-timeout abort.

    asyncio's own timer aborts the connection with a ``ConnectionAbortedError``
    whose message says so; the error raised instead is that
    ``ConnectionAbortedError`` and also a ``TimeoutError``.
    """
    if isinstance(exc, ConnectionAbortedError) and str(exc).startswith(
        "SSL handshake is taking longer than"
    ):
        raise HandshakeTimeoutError(handshake_timeout(timeout)) from exc


class TLSSession:
    """One TLS connection's state: an ``SSLObject`` and its two memory BIOs.

    Ciphertext received from the peer goes in with :meth:`receive`; what the
    SSL object wants sent comes out of :meth:`outgoing`. No method blocks or
    performs I/O.
    """

    __slots__ = ("_incoming", "_outgoing", "handshake_done", "ssl_object")

    def __init__(
        self, context: ssl.SSLContext, *, server_side: bool, hostname: str | None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object: Final = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=None if server_side else (hostname or None),
        )
        self.handshake_done = False

    def outgoing(self) -> bytes:
        """Take the ciphertext waiting to be sent (``b""`` if none)."""
        return self._outgoing.read() if self._outgoing.pending else b""

    def do_handshake(self) -> bool:
        """Advance the handshake; True once it is complete.

        Raises ``ssl.SSLError`` (a certificate or protocol failure).
        """
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.handshake_done = True
        return True

    def receive(self, ciphertext: bytes | memoryview) -> None:
        """Hand ciphertext from the peer to the SSL object."""
        self._incoming.write(ciphertext)

    def receive_eof(self) -> None:
        """The peer's TCP stream ended."""
        self._incoming.write_eof()

    def read_plaintext(
        self, max_size: int
    ) -> tuple[list[bytes], bool, ssl.SSLError | None]:
        """Decrypt what can be decrypted: ``(chunks, peer_closed, error)``.

        ``peer_closed`` is True once the peer sent ``close_notify`` or its
        stream ended (a ragged EOF reads as EOF, as asyncio). ``error`` is the
        ``ssl.SSLError`` of corrupt input; ``chunks`` then holds what was
        decrypted before it, to be delivered first (asyncio drops it when
        both arrive in one receive).
        """
        chunks: list[bytes] = []
        read = self.ssl_object.read
        while True:
            try:
                chunk = read(max_size)
            except ssl.SSLWantReadError:
                return chunks, False, None
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ssl.SSLSyscallError):
                return chunks, True, None
            except ssl.SSLError as exc:
                return chunks, False, exc
            if not chunk:
                return chunks, True, None
            chunks.append(chunk)

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt application data; return the ciphertext to send."""
        view = memoryview(data)
        write = self.ssl_object.write
        while view:
            written = write(view)
            view = view[written:]
        return self.outgoing()

    def close_notify(self) -> bytes:
        """Start the TLS shutdown; return the ``close_notify`` alert to send."""
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError, ValueError):
            self.ssl_object.unwrap()
        return self.outgoing()
