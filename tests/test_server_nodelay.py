"""TCP connections have Nagle's algorithm off, as asyncio's streams have it.

asyncio sets ``TCP_NODELAY`` on every TCP transport, accepted and wrapped
(``sock=``) ones included; ``trio.serve_tcp`` and ``trio.SocketStream`` do the
same. A server that writes one small reply per request of a pipelined batch
otherwise waits for the client's delayed ACK (up to 40 ms on Linux) before
its second reply: the RESP benchmark at 16 pipelined requests measured
portastreams on trio at a flat 18,000 requests/s, a quarter of the
hand-written trio server.
"""

from __future__ import annotations

import asyncio
import socket

import anyio
import pytest

import portastreams

pytestmark = pytest.mark.anyio


def _asyncio_accepted_nodelay() -> int:
    """TCP_NODELAY of a connection accepted by CPython's asyncio.start_server."""

    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            value = await asyncio.wait_for(accepted, 10)
            writer.close()
            await writer.wait_closed()
        return value

    return asyncio.run(main())


async def test_accepted_connections_have_nagle_off_as_in_asyncio(
    backend_name: str,
) -> None:
    expected = await anyio.to_thread.run_sync(_asyncio_accepted_nodelay)
    assert expected, "asyncio's start_server turns Nagle's algorithm off"
    accepted: list[int] = []

    async def handler(
        reader: portastreams.StreamReader, writer: portastreams.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        accepted.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    with anyio.fail_after(10):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
            assert await reader.read() == b""  # the handler returned: closed
            writer.close()
            await writer.wait_closed()
    assert accepted == [expected]


def _asyncio_wrapped_nodelay() -> int:
    """TCP_NODELAY of a TCP socket CPython's asyncio.open_connection(sock=) wraps."""

    async def main() -> int:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sock = socket.create_connection(listener.getsockname())
            _, writer = await asyncio.open_connection(sock=sock)
            value: int = writer.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            writer.close()
            await writer.wait_closed()
        return value

    return asyncio.run(main())


async def test_a_wrapped_tcp_socket_has_nagle_off_as_in_asyncio(
    backend_name: str,
) -> None:
    expected = await anyio.to_thread.run_sync(_asyncio_wrapped_nodelay)
    assert expected, "asyncio's open_connection(sock=) turns Nagle's algorithm off"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = socket.create_connection(listener.getsockname())
        with anyio.fail_after(10):
            _, writer = await portastreams.open_connection(sock=sock)
            value = writer.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            writer.close()
            await writer.wait_closed()
    assert value == expected
