"""TLS over AnyIO streams: handshakes with a deadline, and a polite close.

Policy (the asyncio one):

* Verification is on unless the caller's context turns it off: ``ssl=True``
  means ``ssl.create_default_context()``.
* A handshake that does not finish within ``ssl_handshake_timeout`` (default
  60 s, as asyncio) raises ``TimeoutError``; the socket is closed either way.
* A peer that closes the TCP connection without a TLS ``close_notify`` is
  read as a normal end of stream (AnyIO's ``standard_compatible=False``), as
  asyncio does: HTTP/1.x servers commonly do this, and protocols that need
  truncation protection frame their messages.
* Closing sends ``close_notify`` and then closes the socket without waiting
  for the peer's ``close_notify`` reply (which TLS allows), so ``close()``
  never hangs on a silent peer.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Final

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "close_tls", "handshake_timeout", "wrap_tls"]

#: asyncio's default ``ssl_handshake_timeout``.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 60.0


def handshake_timeout(value: float | None) -> float:
    """Validate ``ssl_handshake_timeout`` and apply asyncio's default."""
    if value is None:
        return DEFAULT_HANDSHAKE_TIMEOUT
    if value <= 0:
        raise ValueError(
            f"ssl_handshake_timeout should be a positive number, got {value}"
        )
    return float(value)


async def wrap_tls(
    stream: ByteStream,
    *,
    server_side: bool,
    context: ssl.SSLContext,
    hostname: str | None,
    timeout: float,
) -> TLSStream:
    """Run the TLS handshake over ``stream`` within ``timeout`` seconds.

    On any failure (certificate, protocol, timeout, cancellation) ``stream``
    is closed before the error propagates.
    """
    try:
        with anyio.fail_after(timeout):
            return await TLSStream.wrap(
                stream,
                server_side=server_side,
                hostname=None if server_side else (hostname or None),
                ssl_context=context,
                standard_compatible=False,
            )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


async def close_tls(stream: TLSStream) -> None:
    """Send ``close_notify`` (best effort), then close the underlying stream."""
    try:
        ssl_object = stream.extra(TLSAttribute.ssl_object)
        write_bio = getattr(stream, "_write_bio", None)
        if write_bio is not None:
            # SSLWantReadError: the alert is written, and no reply is awaited.
            with contextlib.suppress(ssl.SSLError, ValueError):
                ssl_object.unwrap()
            alert = write_bio.read()
            if alert:
                await stream.transport_stream.send(alert)
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the peer is gone: nothing to be polite to
    finally:
        await stream.transport_stream.aclose()
