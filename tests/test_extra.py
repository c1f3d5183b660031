"""AnyIO's typed attributes of a connection, compared with AnyIO's own streams.

A portastreams reader and writer are AnyIO streams too, so
``writer.extra(SocketAttribute.remote_port)`` must answer what an AnyIO
socket (or TLS) stream on the same kind of connection answers: the same
attributes present, the same values for the same connection. Each test
makes two connections side by side -- one with portastreams, one with AnyIO
-- and compares them, on every path (plain and TLS, TCP over IPv4 and IPv6,
Unix sockets, ``start_tls``; client and server side) and every backend.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream
from certificates import client_context, server_context
from certificates import test_ca as certificate_authority

import portastreams
from portastreams import StreamReader, StreamWriter
from portastreams._extra import socket_extra_attributes

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0

Path_ = Literal[
    "tcp", "tcp6", "unix", "tcp-tls", "tcp-tls12", "tcp6-tls", "unix-tls", "start-tls"
]
PATHS: list[Path_] = [
    "tcp",
    "tcp6",
    "unix",
    "tcp-tls",
    "tcp-tls12",
    "tcp6-tls",
    "unix-tls",
    "start-tls",
]

#: Values that are the same on two connections between the same two parties.
SHARED = (
    SocketAttribute.family,
    SocketAttribute.remote_address,
    SocketAttribute.remote_port,
    TLSAttribute.alpn_protocol,
    TLSAttribute.cipher,
    TLSAttribute.peer_certificate,
    TLSAttribute.peer_certificate_binary,
    TLSAttribute.server_side,
    TLSAttribute.shared_ciphers,
    TLSAttribute.standard_compatible,
    TLSAttribute.tls_version,
)


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _ipv6_available()


def values(provider: anyio.TypedAttributeProvider) -> dict[Any, object]:
    """Every typed attribute of ``provider`` and its value (or the error's class)."""
    result: dict[Any, object] = {}
    attributes: Mapping[Any, Callable[[], Any]] = provider.extra_attributes
    for attribute, getter in attributes.items():
        try:
            result[attribute] = getter()
        except Exception as exc:
            result[attribute] = type(exc).__name__
    return result


async def serve_connections(
    listener: anyio.abc.Listener[Any],
    count: int,
    serve: Callable[[ByteStream], Any],
) -> None:
    """Accept ``count`` connections and serve each in a task of its own.

    Accepting a known number of connections, and serving each until its
    client leaves, ends the listener's work without cancelling a wait
    (AnyIO's Unix streams on asyncio do not like that).
    """
    accept = listener.accept  # type: ignore[attr-defined]
    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(serve, await accept())


async def starttls_server(stream: ByteStream) -> None:
    """The server's half of a STARTTLS exchange in plain text, before TLS starts."""
    request = b""
    while len(request) < 8:
        request += await stream.receive(8 - len(request))
    assert request == b"STARTTLS"
    await stream.send(b"OK")


async def starttls_client(stream: ByteStream) -> None:
    """The client's half: ask, and wait for the go-ahead before the ClientHello."""
    await stream.send(b"STARTTLS")
    answer = b""
    while len(answer) < 2:
        answer += await stream.receive(2 - len(answer))
    assert answer == b"OK"


def kind_of(path: Path_) -> tuple[str, bool]:
    """The listener's kind (``tcp``, ``tcp6``, ``unix``) and whether TLS is on."""
    if path == "start-tls":
        return "tcp", True
    kind, _, tls = path.partition("-")
    return kind, tls.startswith("tls")


@functools.cache
def tls12_client_context() -> ssl.SSLContext:
    """A client context that stops at TLS 1.2 (where ``tls-unique`` exists)."""
    context = ssl.create_default_context()
    certificate_authority().configure_trust(context)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def context_for(path: Path_) -> ssl.SSLContext:
    """The client's TLS context on ``path``."""
    return tls12_client_context() if path == "tcp-tls12" else client_context()


@contextlib.asynccontextmanager
async def anyio_listener(
    kind: str, directory: Path
) -> AsyncIterator[tuple[anyio.abc.Listener[Any], dict[str, Any]]]:
    """An AnyIO listener of ``kind`` and how to connect to it."""
    listener: anyio.abc.Listener[Any]
    if kind == "unix":
        path = str(directory / "extra.sock")
        listener = await anyio.create_unix_listener(path)
        address: dict[str, Any] = {"path": path}
    else:
        host = "::1" if kind == "tcp6" else "127.0.0.1"
        (tcp_listener,) = (await anyio.create_tcp_listener(local_host=host)).listeners
        listener = tcp_listener
        address = {"host": host, "port": tcp_listener.extra(SocketAttribute.local_port)}
    async with listener:
        yield listener, address


async def anyio_client(
    address: dict[str, Any], context: ssl.SSLContext | None
) -> ByteStream:
    """AnyIO's own client connection (TLS as asyncio's: ragged EOFs allowed)."""
    stream: ByteStream
    if "path" in address:
        stream = await anyio.connect_unix(address["path"])
    else:
        stream = await anyio.connect_tcp(address["host"], address["port"])
    if context is not None:
        stream = await TLSStream.wrap(
            stream,
            hostname="localhost",
            ssl_context=context,
            standard_compatible=False,
        )
    return stream


async def portastreams_client(
    address: dict[str, Any], path: Path_
) -> tuple[StreamReader, StreamWriter]:
    tls = context_for(path) if kind_of(path)[1] else None
    hostname = "localhost" if tls is not None else None
    if "path" in address:
        return await portastreams.open_unix_connection(
            address["path"], ssl=tls, server_hostname=hostname
        )
    return await portastreams.open_connection(
        address["host"], address["port"], ssl=tls, server_hostname=hostname
    )


def check_like_anyio(
    ours: dict[Any, object],
    anyio_values: dict[Any, object],
    peer_of_ours: dict[Any, object],
) -> None:
    """``ours`` against AnyIO's stream of the same kind, and what our peer sees."""
    assert set(ours) == set(anyio_values)
    for attribute in SHARED:
        if attribute in anyio_values:
            assert ours[attribute] == anyio_values[attribute], attribute
    for attribute in (SocketAttribute.local_address, SocketAttribute.local_port):
        if attribute in ours:
            remote = {
                SocketAttribute.local_address: SocketAttribute.remote_address,
                SocketAttribute.local_port: SocketAttribute.remote_port,
            }[attribute]
            if remote in peer_of_ours:
                assert ours[attribute] == peer_of_ours[remote], attribute
            else:  # an unnamed Unix client socket
                assert ours[attribute] == anyio_values[attribute], attribute
    binding = TLSAttribute.channel_binding_tls_unique
    if binding in anyio_values:
        assert type(ours[binding]) is type(anyio_values[binding])
        if ours[TLSAttribute.tls_version] == "TLSv1.2":
            assert isinstance(ours[binding], bytes)
            assert ours[binding] != anyio_values[binding]  # per connection


def check_native_names(writer: StreamWriter, ours: dict[Any, object]) -> None:
    """The typed attributes agree with asyncio's ``get_extra_info`` names."""
    assert ours[SocketAttribute.raw_socket] is writer.get_extra_info("socket")
    if TLSAttribute.ssl_object in ours:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        assert ours[TLSAttribute.ssl_object] is ssl_object
        assert ours[TLSAttribute.cipher] == writer.get_extra_info("cipher")
        assert ours[TLSAttribute.peer_certificate] == writer.get_extra_info("peercert")


@pytest.mark.parametrize("path", PATHS)
async def test_client_attributes_are_anyio_streams(path: Path_, sock_dir: Path) -> None:
    kind, tls = kind_of(path)
    if kind == "tcp6" and not IPV6:
        pytest.fail("this machine has no IPv6 loopback")
    accepted: list[dict[Any, object]] = []
    ready = anyio.Event()

    async def serve(stream: ByteStream) -> None:
        async with stream:
            if path == "start-tls":
                await starttls_server(stream)
            if tls:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=server_context(),
                    standard_compatible=False,
                )
            accepted.append(values(stream))
            if len(accepted) == 2:
                ready.set()
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await stream.receive()

    with anyio.fail_after(TIMEOUT):
        async with (
            anyio_listener(kind, sock_dir) as (listener, address),
            anyio.create_task_group() as group,
        ):
            group.start_soon(serve_connections, listener, 2, serve)
            if path == "start-tls":
                plain = await anyio_client(address, None)
                await starttls_client(plain)
                reference: ByteStream = await TLSStream.wrap(
                    plain,
                    hostname="localhost",
                    ssl_context=client_context(),
                    standard_compatible=False,
                )
            else:
                reference = await anyio_client(
                    address, context_for(path) if tls else None
                )
            if path == "start-tls":
                reader, writer = await portastreams.open_connection(
                    address["host"], address["port"]
                )
                writer.write(b"STARTTLS")
                assert await reader.readexactly(2) == b"OK"
                await writer.start_tls(client_context(), server_hostname="localhost")
            else:
                reader, writer = await portastreams_client(address, path)
            await ready.wait()
            ours = values(writer)
            assert values(reader) == ours
            check_like_anyio(ours, values(reference), accepted[1])
            check_native_names(writer, ours)
            writer.close()
            await writer.wait_closed()
            await reference.aclose()


@pytest.mark.parametrize("path", PATHS)
async def test_server_attributes_are_anyio_streams(path: Path_, sock_dir: Path) -> None:
    kind, tls = kind_of(path)
    if kind == "tcp6" and not IPV6:
        pytest.fail("this machine has no IPv6 loopback")
    seen: list[dict[Any, object]] = []
    handler_done = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        if path == "start-tls":
            assert await reader.readexactly(8) == b"STARTTLS"
            writer.write(b"OK")
            await writer.start_tls(server_context())
        ours = values(writer)
        assert values(reader) == ours
        check_native_names(writer, ours)
        seen.append(ours)
        handler_done.set()
        await reader.read()

    anyio_side: list[dict[Any, object]] = []

    async def serve(stream: ByteStream) -> None:
        async with stream:
            if path == "start-tls":
                await starttls_server(stream)
            if tls:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=server_context(),
                    standard_compatible=False,
                )
            anyio_side.append(values(stream))
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await stream.receive()

    server_tls = server_context() if tls and path != "start-tls" else None
    with anyio.fail_after(TIMEOUT):
        if kind == "unix":
            socket_path = str(sock_dir / "ours.sock")
            server = await portastreams.start_unix_server(
                handler, socket_path, ssl=server_tls
            )
            ours_address: dict[str, Any] = {"path": socket_path}
        else:
            host = "::1" if kind == "tcp6" else "127.0.0.1"
            server = await portastreams.start_server(handler, host, 0, ssl=server_tls)
            ours_address = {"host": host, "port": server.sockets[0].getsockname()[1]}
        async with (
            server,
            anyio_listener(kind, sock_dir) as (listener, address),
            anyio.create_task_group() as group,
        ):
            group.start_soon(serve_connections, listener, 1, serve)
            clients = []
            streams: list[ByteStream] = []
            for target in (ours_address, address):
                if path == "start-tls":
                    plain = await anyio_client(target, None)
                    await starttls_client(plain)
                    client: ByteStream = await TLSStream.wrap(
                        plain,
                        hostname="localhost",
                        ssl_context=client_context(),
                        standard_compatible=False,
                    )
                else:
                    client = await anyio_client(
                        target, context_for(path) if tls else None
                    )
                clients.append(values(client))
                streams.append(client)
            await handler_done.wait()
            while not anyio_side:
                await anyio.sleep(0.01)
            for stream in streams:
                await stream.aclose()
            ours = seen[0]
            assert set(ours) == set(anyio_side[0])
            for attribute in SHARED:
                if attribute not in (
                    SocketAttribute.remote_address,
                    SocketAttribute.remote_port,
                ) and (attribute in ours):
                    assert ours[attribute] == anyio_side[0][attribute], attribute
            our_client = clients[0]
            assert (
                ours[SocketAttribute.local_address]
                == our_client[SocketAttribute.remote_address]
            )
            if kind != "unix":
                assert (
                    ours[SocketAttribute.remote_address]
                    == our_client[SocketAttribute.local_address]
                )
                assert (
                    ours[SocketAttribute.remote_port]
                    == our_client[SocketAttribute.local_port]
                )
                assert (
                    ours[SocketAttribute.local_port]
                    == our_client[SocketAttribute.remote_port]
                )


async def test_listening_socket_attributes_are_anyio_listeners() -> None:
    """A socket with no peer: the attributes AnyIO's own listener has."""
    with anyio.fail_after(TIMEOUT):
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with multi:
            (listener,) = multi.listeners
            sock = listener.extra(SocketAttribute.raw_socket)
            ours = {
                attribute: getter()
                for attribute, getter in socket_extra_attributes(sock).items()
            }
            assert ours == values(listener)
            assert SocketAttribute.remote_address not in ours
    assert socket_extra_attributes(None) == {}


async def test_a_servers_connections_share_their_address_objects(
    backend_name: str,
) -> None:
    """Two connections to one server have equal socknames and peer hosts:
    on the transport path (trio) they are one object each, a few hundred
    bytes less per idle connection; every path answers the same values."""
    seen: list[tuple[Any, Any]] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        seen.append(
            (writer.get_extra_info("sockname"), writer.get_extra_info("peername"))
        )
        await reader.read()

    with anyio.fail_after(TIMEOUT):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        async with server:
            address = server.sockets[0].getsockname()
            clients = [socket.create_connection(address) for _ in range(2)]
            while len(seen) < 2:
                await anyio.sleep(0.01)
            by_address = {client.getsockname(): client for client in clients}
            for sockname, peername in seen:
                assert sockname == by_address.pop(peername).getpeername() == address
            for client in clients:
                client.close()
    (first_sockname, first_peer), (second_sockname, second_peer) = seen
    assert first_peer[1] != second_peer[1]
    if backend_name == "trio":
        assert first_sockname is second_sockname
        assert first_peer[0] is second_peer[0]
