"""``Server.close()`` closes the listening sockets before it returns.

API.md: "``close()`` stops accepting at once (the listening sockets are closed
before it returns, as in asyncio)". A client that connects right after
``close()`` returned must be refused. If the listening socket were still
open, the kernel would complete the client's handshake and queue it, and the
server would then drop it unserved when the socket finally closes. The stress
suite's ``close`` experiment found this under traffic; these tests pin it
down, with asyncio's own server as the reference.
"""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest
from backends import ASYNCIO_BACKENDS

import portastreams
from portastreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio


async def ignore(reader: StreamReader, writer: StreamWriter) -> None:
    await reader.read()


def connect_now(port: int) -> str:
    """Connect without yielding to the event loop: "refused" or "accepted"."""
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return "refused"
        return "accepted"


async def test_close_refuses_new_clients_before_returning() -> None:
    with anyio.fail_after(10):
        server = await portastreams.start_server(ignore, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            assert connect_now(port) == "accepted"
            server.close()
            assert connect_now(port) == "refused"
            await server.wait_closed()


async def test_close_refuses_new_clients_while_serving_forever() -> None:
    with anyio.fail_after(10):
        server = await portastreams.start_server(ignore, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with anyio.create_task_group() as task_group:
            await task_group.start(server.serve_forever)
            server.close()
            assert connect_now(port) == "refused"


@pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
async def test_asyncio_server_close_refuses_before_returning() -> None:
    # The reference: asyncio's own Server.close() closes its sockets at once.
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.read()
        writer.close()

    with anyio.fail_after(10):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        assert connect_now(port) == "accepted"
        server.close()
        assert connect_now(port) == "refused"
        await server.wait_closed()
