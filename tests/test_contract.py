"""The connection contract, checked on every way a connection can be built.

``portastreams.testing.check_connection_contract`` holds the scenarios; this
module builds pairs on every path -- the asyncio/uvloop native client, the
generic AnyIO client, server-side connections, TCP and Unix, TLS clients and
servers, connections upgraded with ``start_tls``, ``wrap_stream`` over memory
streams, and asyncio's ``StreamReaderProtocol`` -- and runs every scenario on
each, on every backend, in both directions (so both ends' readers and writers
are checked).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from certificates import client_context, server_context

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams.testing import (
    SCENARIOS,
    ConnectionEnd,
    check_connection_contract,
    connected_pair,
)

pytestmark = pytest.mark.anyio

#: Every path, by name: (server kind, how the client connects, TLS mode).
PATHS = {
    "memory": ("memory", "", ""),
    "tcp": ("tcp", "open", ""),
    "unix": ("unix", "open", ""),
    "tcp-anyio-client": ("tcp", "anyio", ""),
    "unix-anyio-client": ("unix", "anyio", ""),
    "tcp-tls": ("tcp", "open", "tls"),
    "unix-tls": ("unix", "open", "tls"),
    "tcp-start-tls": ("tcp", "open", "start_tls"),
    "tcp-protocol": ("tcp", "protocol", ""),
}


@contextlib.asynccontextmanager
async def pair_over_server(
    path: str, directory: Path, limit: int
) -> AsyncIterator[tuple[ConnectionEnd, ConnectionEnd]]:
    """A client end and the server end of one connection to a portastreams server."""
    kind, client, tls = PATHS[path]
    if kind == "memory":
        async with connected_pair(limit=limit) as pair:
            yield pair
        return
    send, receive = anyio.create_memory_object_stream[ConnectionEnd](1)
    done = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        await send.send((reader, writer))
        await done.wait()

    ssl_server = server_context() if tls == "tls" else None
    ssl_client = client_context() if tls == "tls" else None
    socket_path = str(directory / "contract.sock")
    if kind == "tcp":
        server = await portastreams.start_server(
            handler, "127.0.0.1", 0, limit=limit, ssl=ssl_server
        )
        port = server.sockets[0].getsockname()[1]
    else:
        server = await portastreams.start_unix_server(
            handler, socket_path, limit=limit, ssl=ssl_server
        )
    async with server, send, receive:
        client_end: ConnectionEnd
        if client == "anyio":
            stream: Any = (
                await anyio.connect_tcp("127.0.0.1", port)
                if kind == "tcp"
                else await anyio.connect_unix(socket_path)
            )
            client_end = portastreams.wrap_stream(stream, limit=limit)
        elif client == "protocol":
            loop = asyncio.get_running_loop()
            reader = portastreams.StreamReader(limit=limit)
            protocol = portastreams.StreamReaderProtocol(reader)
            transport, _ = await loop.create_connection(
                lambda: protocol, "127.0.0.1", port
            )
            client_end = (reader, StreamWriter(transport, protocol, reader))
        elif kind == "tcp":
            client_end = await portastreams.open_connection(
                "127.0.0.1",
                port,
                limit=limit,
                ssl=ssl_client,
                server_hostname="localhost" if ssl_client else None,
            )
        else:
            client_end = await portastreams.open_unix_connection(
                socket_path,
                limit=limit,
                ssl=ssl_client,
                server_hostname="localhost" if ssl_client else None,
            )
        server_end = await receive.receive()
        if tls == "start_tls":
            async with anyio.create_task_group() as group:
                group.start_soon(
                    lambda: client_end[1].start_tls(
                        client_context(), server_hostname="localhost"
                    )
                )
                group.start_soon(lambda: server_end[1].start_tls(server_context()))
        try:
            yield client_end, server_end
        finally:
            with anyio.CancelScope(shield=True):
                # (A closed transport is not aborted again: CPython 3.11's
                # selector transport fails that after a close with data.)
                if not client_end[1].is_closing():
                    client_end[1].transport.abort()
                await client_end[1].wait_closed()
                done.set()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("path", list(PATHS))
async def test_contract(
    path: str, scenario: str, sock_dir: Path, backend_name: str
) -> None:
    if path == "tcp-protocol" and backend_name == "trio":
        with pytest.raises(RuntimeError, match="asyncio-only"):
            portastreams.StreamReaderProtocol(portastreams.StreamReader())
        return
    with anyio.fail_after(120):
        checked = await check_connection_contract(
            lambda limit: pair_over_server(path, sock_dir, limit),
            scenarios=[scenario],
        )
    assert checked == [f"{scenario}/forward", f"{scenario}/reverse"]
