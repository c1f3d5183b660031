"""A TLS peer at the other end of an in-memory stream, for ``start_tls()`` tests."""

from __future__ import annotations

import ssl

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream
from certificates import client_context, server_context

from portastreams import StreamWriter


async def start_tls_with_a_peer(
    writer: StreamWriter,
    raw_peer: ByteStream,
    *,
    client: ssl.SSLContext | None = None,
    server: ssl.SSLContext | None = None,
    standard_compatible: bool = False,
    ssl_shutdown_timeout: float | None = None,
) -> TLSStream:
    """``writer.start_tls(client)``, with an AnyIO TLS server (``server``) at the
    other end of ``raw_peer``; returns the peer's ``TLSStream``.

    The contexts default to the test CA's (``certificates``).
    ``standard_compatible`` is the peer's: whether it closes with
    ``close_notify`` (and can ``unwrap()``).
    """
    peer: list[TLSStream] = []

    async def serve_tls() -> None:
        peer.append(
            await TLSStream.wrap(
                raw_peer,
                server_side=True,
                ssl_context=server or server_context(),
                standard_compatible=standard_compatible,
            )
        )

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(serve_tls)
        await writer.start_tls(
            client or client_context(),
            server_hostname="localhost",
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    return peer[0]


async def close_during_start_tls(
    writer: StreamWriter, context: ssl.SSLContext, how: str, *, after: float
) -> list[str]:
    """Start ``writer.start_tls(context)`` in a task, and ``after`` seconds into
    its handshake close the connection (``how``: ``"writer.close"`` or
    ``"transport.abort"``); return the repr of each ``ConnectionResetError``
    the upgrade raised."""
    errors: list[str] = []

    async def upgrade() -> None:
        try:
            await writer.start_tls(context, server_hostname="localhost")
        except ConnectionResetError as exc:
            errors.append(repr(exc))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(upgrade)
        await anyio.sleep(after)
        if how == "writer.close":
            writer.close()
        else:
            writer.transport.abort()
    return errors
