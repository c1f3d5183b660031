"""Client connections: open_connection / open_unix_connection / wrap_stream.

Echo and bulk transfer through a portastreams server, connection errors,
keyword checking, ``sock=``, ``wrap_stream`` over AnyIO memory streams,
``StreamReaderProtocol`` and the AnyIO stream interface of the pair. Every
test runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.stapled import StapledByteStream
from anyio.streams.text import TextReceiveStream, TextSendStream
from backends import ASYNCIO_BACKENDS, TRIO_BACKEND
from reference import on_asyncio
from sockets import Kind

import portastreams
from portastreams import StreamReader, StreamReaderProtocol, StreamWriter

pytestmark = pytest.mark.anyio

Pair = tuple[StreamReader, StreamWriter]
Handler = Callable[[StreamReader, StreamWriter], Awaitable[None]]

MiB = 1024 * 1024


async def echo_handler(reader: StreamReader, writer: StreamWriter) -> None:
    """Echo until EOF, then half-close (the server closes afterwards)."""
    while data := await reader.read(256 * 1024):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


@asynccontextmanager
async def serving(
    kind: Kind, directory: Path, handler: Handler = echo_handler
) -> AsyncIterator[Callable[[], Awaitable[Pair]]]:
    """Serve ``handler``; yield a function that opens a connection to it."""
    server: portastreams.Server
    if kind == "tcp":
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def connect() -> Pair:
            return await portastreams.open_connection("127.0.0.1", port)
    else:
        path = str(directory / "server.sock")
        server = await portastreams.start_unix_server(handler, path)

        async def connect() -> Pair:
            return await portastreams.open_unix_connection(path)

    async with server:
        yield connect


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- echo, bulk ----------------------------------------------------------------


async def test_echo_through_portastreams_server(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with serving(kind, sock_dir) as connect:
            reader, writer = await connect()
            writer.write(b"line one\n")
            assert await reader.readline() == b"line one\n"
            writer.writelines([b"two ", b"three\n"])
            assert await reader.readuntil(b"\n") == b"two three\n"
            writer.write(b"12345")
            assert await reader.readexactly(5) == b"12345"
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()


async def test_8mib_round_trip_checked_by_sha256(kind: Kind, sock_dir: Path) -> None:
    data = random.Random(80).randbytes(8 * MiB)
    digest = hashlib.sha256()
    size = 0

    async def send_all(writer: StreamWriter) -> None:
        view = memoryview(data)
        for start in range(0, len(data), 512 * 1024):
            writer.write(view[start : start + 512 * 1024])
            await writer.drain()
        writer.write_eof()

    with anyio.fail_after(30):
        async with serving(kind, sock_dir) as connect:
            reader, writer = await connect()
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_all, writer)
                while chunk := await reader.read(1 * MiB):
                    digest.update(chunk)
                    size += len(chunk)
            writer.close()
            await writer.wait_closed()
    assert size == len(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_many_concurrent_clients(kind: Kind, sock_dir: Path) -> None:
    results: dict[int, bytes] = {}

    async def client(connect: Callable[[], Awaitable[Pair]], number: int) -> None:
        reader, writer = await connect()
        message = f"client {number}\n".encode() * (number + 1)
        writer.write(message)
        writer.write_eof()
        results[number] = await reader.read()
        writer.close()
        await writer.wait_closed()

    with anyio.fail_after(20):
        async with serving(kind, sock_dir) as connect, anyio.create_task_group() as tg:
            for number in range(30):
                tg.start_soon(client, connect, number)
    assert results == {
        number: f"client {number}\n".encode() * (number + 1) for number in range(30)
    }


# -- connection errors -----------------------------------------------------------


async def test_connection_refused(backend_name: str) -> None:
    port = free_port()
    with anyio.fail_after(10), pytest.raises(ConnectionRefusedError) as excinfo:
        await portastreams.open_connection("127.0.0.1", port)
    assert isinstance(excinfo.value, OSError)
    if backend_name == "trio":
        # The AnyIO connection path keeps AnyIO's error as the cause. (asyncio
        # and uvloop connect natively and raise the loop's own error, whose
        # cause is None, exactly as asyncio.open_connection.)
        assert excinfo.value.__cause__ is not None


async def test_unknown_host_is_gaierror() -> None:
    with anyio.fail_after(20), pytest.raises(socket.gaierror):
        await portastreams.open_connection("nonexistent.invalid", 80)


async def test_unix_connection_errors(sock_dir: Path) -> None:
    missing = str(sock_dir / "missing.sock")
    with anyio.fail_after(10), pytest.raises(FileNotFoundError):
        await portastreams.open_unix_connection(missing)
    # A socket file that nobody listens on any more.
    stale = str(sock_dir / "stale.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(stale)
    with anyio.fail_after(10), pytest.raises(ConnectionRefusedError):
        await portastreams.open_unix_connection(stale)


async def test_failed_connections_leak_no_descriptors() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError):  # warm up lazily opened resources
        await portastreams.open_connection("127.0.0.1", port)
    before = len(os.listdir("/proc/self/fd"))
    with anyio.fail_after(10):
        for _ in range(50):
            with pytest.raises(ConnectionRefusedError):
                await portastreams.open_connection("127.0.0.1", port)
    assert len(os.listdir("/proc/self/fd")) == before


# -- keywords ----------------------------------------------------------------------


async def test_unsupported_keyword_values_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="family"):
        await portastreams.open_connection("127.0.0.1", 80, family=socket.AF_INET6)
    with pytest.raises(NotImplementedError, match="proto"):
        await portastreams.open_connection("127.0.0.1", 80, proto=socket.IPPROTO_TCP)
    with pytest.raises(NotImplementedError, match="flags"):
        await portastreams.open_connection("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
    with pytest.raises(NotImplementedError, match="interleave"):
        await portastreams.open_connection("127.0.0.1", 80, interleave=1)


async def test_local_addr_with_a_port(backend_name: str, sock_dir: Path) -> None:
    """Honoured where the backend can bind before connecting, refused otherwise."""
    local_port = free_port()
    with anyio.fail_after(10):
        async with serving("tcp", sock_dir) as connect:
            _reader, probe = await connect()
            address = probe.get_extra_info("peername")
            probe.close()
            await probe.wait_closed()
            if backend_name == "trio":
                with pytest.raises(NotImplementedError, match="local_addr"):
                    await portastreams.open_connection(
                        *address, local_addr=("127.0.0.1", local_port)
                    )
                return
            reader, writer = await portastreams.open_connection(
                *address, local_addr=("127.0.0.1", local_port)
            )
            assert writer.get_extra_info("sockname") == ("127.0.0.1", local_port)
            writer.write(b"bound")
            writer.write_eof()
            assert await reader.read() == b"bound"
            writer.close()
            await writer.wait_closed()


async def test_unknown_keywords_are_type_errors(sock_dir: Path) -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        await portastreams.open_connection("127.0.0.1", 80, no_such_option=1)
    with pytest.raises(TypeError, match="no_such_option"):
        await portastreams.open_unix_connection(
            str(sock_dir / "x.sock"), no_such_option=1
        )

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        pass

    with pytest.raises(TypeError, match="no_such_option"):
        await portastreams.start_server(handler, "127.0.0.1", 0, no_such_option=1)
    with pytest.raises(TypeError, match="no_such_option"):
        await portastreams.start_unix_server(
            handler, str(sock_dir / "x.sock"), no_such_option=1
        )
    with pytest.raises(NotImplementedError, match="all_errors"):
        await portastreams.open_connection("127.0.0.1", 80, all_errors=True)


async def test_default_keyword_values_are_accepted(kind: Kind, sock_dir: Path) -> None:
    """asyncio keywords at their default value are fine (nothing to honour)."""
    with anyio.fail_after(10):
        async with serving(kind, sock_dir) as connect:
            _reader, writer = await connect()
            peername = writer.get_extra_info("peername")
            writer.close()
            await writer.wait_closed()
            if kind == "tcp":
                reader, writer = await portastreams.open_connection(
                    "127.0.0.1",
                    peername[1],
                    limit=10,
                    family=0,
                    proto=0,
                    flags=0,
                    ssl=None,
                    local_addr=("127.0.0.1", 0),
                )
                assert writer.get_extra_info("sockname")[0] == "127.0.0.1"
            else:
                reader, writer = await portastreams.open_unix_connection(
                    peername, limit=10, ssl=None
                )
            # limit= reached the reader.
            writer.write(b"x" * 20 + b"\n")
            with pytest.raises(ValueError, match="limit"):
                await reader.readline()
            writer.close()
            await writer.wait_closed()


async def test_argument_errors(sock_dir: Path) -> None:
    with pytest.raises(ValueError, match="host and port"):
        await portastreams.open_connection()
    with pytest.raises(ValueError, match="Limit"):
        await portastreams.open_connection("127.0.0.1", 80, limit=0)
    with pytest.raises(ValueError, match="path"):
        await portastreams.open_unix_connection()
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError, match="sock"):
            await portastreams.open_connection("127.0.0.1", 80, sock=a)
        with pytest.raises(ValueError, match="sock"):
            await portastreams.open_unix_connection(str(sock_dir / "x"), sock=a)
    with pytest.raises(ValueError, match="Limit"):
        portastreams.StreamReader(limit=0)


# -- sock= ---------------------------------------------------------------------------


async def test_sock_with_a_socketpair() -> None:
    left, right = socket.socketpair()
    with anyio.fail_after(10):
        reader1, writer1 = await portastreams.open_connection(sock=left)
        reader2, writer2 = await portastreams.open_unix_connection(sock=right)
        assert writer1.get_extra_info("socket").fileno() == left.fileno()
        writer1.write(b"ping\n")
        assert await reader2.readline() == b"ping\n"
        writer2.write(b"pong\n")
        await writer2.drain()
        assert await reader1.readline() == b"pong\n"
        big = random.Random(3).randbytes(2 * MiB)
        writer1.write(big)
        writer1.close()
        assert await reader2.readexactly(len(big)) == big
        assert await reader2.read() == b""
        await writer1.wait_closed()
        writer2.close()
        await writer2.wait_closed()
    assert left.fileno() == -1
    assert right.fileno() == -1


async def test_sock_with_a_connected_tcp_socket(sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with serving("tcp", sock_dir) as connect:
            _probe_reader, probe = await connect()
            address = probe.get_extra_info("peername")
            probe.close()
            await probe.wait_closed()
            sock = socket.create_connection(address)
            reader, writer = await portastreams.open_connection(sock=sock)
            assert writer.get_extra_info("peername") == address
            writer.write(b"via sock=")
            writer.write_eof()
            assert await reader.read() == b"via sock="
            writer.close()
            await writer.wait_closed()


# -- wrap_stream -----------------------------------------------------------------------


class MemoryByteStream(ByteStream):
    """A ``ByteStream`` over two AnyIO memory object streams (one per direction)."""

    def __init__(
        self,
        send_stream: MemoryObjectSendStream[bytes],
        receive_stream: MemoryObjectReceiveStream[bytes],
    ) -> None:
        self._send_stream = send_stream
        self._receive_stream = receive_stream
        self._leftover = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._leftover:
            self._leftover = await self._receive_stream.receive()
        else:
            await anyio.lowlevel.checkpoint()
        chunk, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return chunk

    async def send(self, item: bytes) -> None:
        await self._send_stream.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send_stream.aclose()

    async def aclose(self) -> None:
        await self._send_stream.aclose()
        await self._receive_stream.aclose()


def memory_pipe(buffer: float = 0) -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams; ``buffer`` chunks may be in flight."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](buffer)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)


async def receive_all(stream: ByteStream) -> bytes:
    data = bytearray()
    while True:
        try:
            data += await stream.receive()
        except anyio.EndOfStream:
            return bytes(data)


async def test_wrap_stream_write_without_drain_then_close() -> None:
    ours, theirs = memory_pipe()
    reader, writer = portastreams.wrap_stream(ours)
    pieces = [bytes([i]) * (i * 997 + 1) for i in range(60)]
    with anyio.fail_after(10):
        for piece in pieces:
            writer.write(piece)
        # Nothing could be sent synchronously: it is all buffered.
        assert writer.transport.get_write_buffer_size() > 0
        writer.close()
        assert await receive_all(theirs) == b"".join(pieces)
        await writer.wait_closed()
        # close() closed the whole stream: our receive side is closed too.
        with pytest.raises(anyio.BrokenResourceError):
            await theirs.send(b"too late")
        assert await reader.read() == b""
        await theirs.aclose()


async def test_wrap_stream_both_directions_and_write_eof() -> None:
    ours, theirs = memory_pipe(buffer=4)
    reader, writer = portastreams.wrap_stream(ours, limit=1000)
    with anyio.fail_after(10):
        await theirs.send(b"hello\nwor")
        await theirs.send(b"ld\n")
        assert await reader.readline() == b"hello\n"
        assert await reader.readline() == b"world\n"
        assert writer.can_write_eof()
        writer.write(b"request")
        writer.write_eof()
        assert await receive_all(theirs) == b"request"
        await theirs.send(b"response")
        await theirs.send_eof()
        assert await reader.read() == b"response"
        assert reader.at_eof()
        assert writer.get_extra_info("peername") is None
        assert writer.get_extra_info("socket", "none") == "none"
        writer.close()
        await writer.wait_closed()
        await theirs.aclose()


async def test_wrap_stream_drain_waits_for_the_consumer() -> None:
    ours, theirs = memory_pipe()
    _reader, writer = portastreams.wrap_stream(ours)
    data = random.Random(4).randbytes(300_000)
    with anyio.fail_after(10):
        writer.write(data)
        assert writer.transport.get_write_buffer_size() == len(data)
        with anyio.move_on_after(0.1):
            await writer.drain()
        # Unbuffered memory stream, nobody receiving: nothing moved.
        assert writer.transport.get_write_buffer_size() > 64 * 1024
        received = bytearray()
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                while len(received) < len(data):
                    received.extend(await theirs.receive())

            tg.start_soon(consume)
            await writer.drain()
            assert writer.transport.get_write_buffer_size() <= 16 * 1024
        assert received == data
        await writer.aclose()
        await theirs.aclose()


async def write_until_error(writer: StreamWriter) -> None:
    while True:
        await writer.drain()
        writer.write(b"x")


async def test_wrap_stream_peer_gone_makes_drain_raise() -> None:
    ours, theirs = memory_pipe()
    reader, writer = portastreams.wrap_stream(ours)
    await theirs.aclose()
    with anyio.fail_after(10):
        writer.write(b"x" * 100_000)
        with pytest.raises(ConnectionResetError):
            await write_until_error(writer)
        assert writer.is_closing()
        writer.close()
        await writer.wait_closed()
        # As asyncio after a failed send: the reader has the connection error.
        assert isinstance(reader.exception(), ConnectionResetError)
        with pytest.raises(ConnectionResetError):
            await reader.read()


async def test_wrap_stream_needs_a_byte_stream() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1)
    with send, receive, pytest.raises(TypeError, match="ByteStream"):
        portastreams.wrap_stream(send)  # type: ignore[arg-type]
    ours, theirs = memory_pipe()
    with pytest.raises(ValueError, match="Limit"):
        portastreams.wrap_stream(ours, limit=-1)
    await ours.aclose()
    await theirs.aclose()


# -- the pair as AnyIO streams ------------------------------------------------------------


async def test_reader_and_writer_are_anyio_streams(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with serving(kind, sock_dir) as connect:
            reader, writer = await connect()
            assert isinstance(reader, anyio.abc.ByteReceiveStream)
            assert isinstance(writer, anyio.abc.ByteSendStream)
            await writer.send(b"abc")
            assert await reader.receive(2) == b"ab"
            assert await reader.receive() == b"c"
            await writer.send(b"defg")
            assert await reader.readexactly(1) == b"d"
            assert await reader.receive(100) == b"efg"
            await writer.send_eof()
            with pytest.raises(anyio.EndOfStream):
                await reader.receive()
            await writer.aclose()
            assert writer.is_closing()
            await reader.aclose()


async def test_pair_composes_with_anyio_stream_wrappers(
    kind: Kind, sock_dir: Path
) -> None:
    with anyio.fail_after(10):
        async with serving(kind, sock_dir) as connect:
            reader, writer = await connect()
            text_out = TextSendStream(writer)
            text_in = TextReceiveStream(reader)
            await text_out.send("héllo wörld")
            received = ""
            while len(received) < len("héllo wörld"):
                received += await text_in.receive()
            assert received == "héllo wörld"
            # A StapledByteStream of the pair is a ByteStream that
            # wrap_stream() accepts in turn.
            inner_reader, inner_writer = portastreams.wrap_stream(
                StapledByteStream(writer, reader)
            )
            inner_writer.write(b"layered\n")
            assert await inner_reader.readline() == b"layered\n"
            inner_writer.close()
            await inner_writer.wait_closed()
            assert writer.is_closing()


# -- StreamReaderProtocol -------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)
async def test_stream_reader_protocol_on_asyncio(kind: Kind, sock_dir: Path) -> None:
    """StreamReaderProtocol is asyncio-only by nature: asyncio and uvloop."""
    loop = asyncio.get_running_loop()
    handled: list[bytes] = []

    async def handle(reader: StreamReader, writer: StreamWriter) -> None:
        assert isinstance(reader, StreamReader)
        assert isinstance(writer, StreamWriter)
        line = await reader.readline()
        handled.append(line)
        writer.write(line.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    def factory() -> StreamReaderProtocol:
        return StreamReaderProtocol(StreamReader(), handle)

    server: asyncio.AbstractServer
    path = str(sock_dir / "proto.sock")
    if kind == "tcp":
        server = await loop.create_server(factory, "127.0.0.1", 0)
    else:
        server = await loop.create_unix_server(factory, path)
    try:
        reader = StreamReader()
        protocol = StreamReaderProtocol(reader)
        transport: Any
        if kind == "tcp":
            port = server.sockets[0].getsockname()[1]
            transport, _ = await loop.create_connection(
                lambda: protocol, "127.0.0.1", port
            )
        else:
            transport, _ = await loop.create_unix_connection(lambda: protocol, path)
        writer = StreamWriter(transport, protocol, reader)
        with anyio.fail_after(10):
            writer.write(b"hello protocol\n")
            await writer.drain()
            assert await reader.readline() == b"HELLO PROTOCOL\n"
            assert await reader.read() == b""
            assert writer.get_extra_info("peername") == transport.get_extra_info(
                "peername"
            )
            writer.close()
            await writer.wait_closed()
        assert handled == [b"hello protocol\n"]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("anyio_backend", TRIO_BACKEND)
async def test_stream_reader_protocol_refused_on_trio() -> None:
    with pytest.raises(RuntimeError, match="asyncio-only") as excinfo:
        StreamReaderProtocol(StreamReader())
    # The message points to what to use instead.
    assert "open_connection" in str(excinfo.value)


@pytest.mark.parametrize("delay", [None, 0.125])
async def test_happy_eyeballs_delay_reaches_the_connector(
    delay: float | None, anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``happy_eyeballs_delay`` is handed to what connects: the event loop's
    ``create_connection`` on asyncio, AnyIO's ``connect_tcp`` on trio and on
    uvloop (whose ``create_connection`` has no such option). None is not
    passed on."""
    seen: list[Any] = []
    connect_tcp = anyio.connect_tcp

    async def spy_connect_tcp(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("happy_eyeballs_delay"))
        return await connect_tcp(*args, **kwargs)

    monkeypatch.setattr(anyio, "connect_tcp", spy_connect_tcp)
    if anyio_backend_name == "asyncio":
        loop: Any = asyncio.get_running_loop()
        create_connection = loop.create_connection

        async def spy_create_connection(*args: Any, **kwargs: Any) -> Any:
            seen.append(kwargs.get("happy_eyeballs_delay"))
            return await create_connection(*args, **kwargs)

        monkeypatch.setattr(loop, "create_connection", spy_create_connection)

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(await reader.readline())

    with anyio.fail_after(10):
        server = await portastreams.start_server(handler, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await portastreams.open_connection(
                "127.0.0.1", port, happy_eyeballs_delay=delay
            )
            writer.write(b"hi\n")
            assert await reader.readline() == b"hi\n"
            writer.close()
            await writer.wait_closed()
    # The first connector called is the one open_connection() chose (AnyIO's
    # connect_tcp on asyncio calls the loop's create_connection in turn).
    assert seen[0] == delay


@pytest.mark.parametrize("family", ["tcp", "unix", "unix-sock"])
async def test_addresses_outlive_the_close(family: str, sock_dir: Path) -> None:
    """``peername`` and ``sockname`` still answer after ``close()``, as on
    asyncio's streams (the event loop's transports keep them, uvloop's
    included; the portastreams transport keeps what it read at the start)."""

    async def addresses_around_a_close(library: Any) -> list[bool]:
        if family == "tcp":
            listener = socket.create_server(("127.0.0.1", 0))
            connect = partial(
                library.open_connection, "127.0.0.1", listener.getsockname()[1]
            )
        else:
            path = str(sock_dir / f"{library.__name__}.sock")
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(path)
            listener.listen()
            connect = partial(library.open_unix_connection, path)
            if family == "unix-sock":
                given = socket.socket(socket.AF_UNIX)
                given.connect(path)
                connect = partial(library.open_unix_connection, sock=given)
        with listener:
            _, writer = await connect()
            before = [writer.get_extra_info(name) for name in ("peername", "sockname")]
            writer.close()
            await writer.wait_closed()
            after = [writer.get_extra_info(name) for name in ("peername", "sockname")]
        return [a == b and a is not None for a, b in zip(before, after, strict=True)]

    expected = await on_asyncio(lambda: addresses_around_a_close(asyncio))
    with anyio.fail_after(10):
        observed = await addresses_around_a_close(portastreams)
    assert observed == expected == [True, True]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("run", ["asyncio", "uvloop", "trio"])
async def test_event_loops_in_other_threads_receive_intact(
    anyio_backend: Any, run: str
) -> None:
    """Connections receive into one buffer per thread (the asyncio and uvloop
    protocol, trio's receiver): event loops in two more threads, receiving
    different bytes at the same time, each get their own intact."""
    payloads = [os.urandom(1 << 20), os.urandom(1 << 20)]

    def peer(listener: socket.socket, payload: bytes) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(payload)

    def client_thread(payload: bytes) -> bytes:
        async def receive_all() -> bytes:
            listener = socket.create_server(("127.0.0.1", 0))
            with listener:
                sender = threading.Thread(target=peer, args=(listener, payload))
                sender.start()
                reader, writer = await portastreams.open_connection(
                    "127.0.0.1", listener.getsockname()[1]
                )
                data = await reader.read()
                writer.close()
                await writer.wait_closed()
                sender.join()
            return data

        if run == "trio":
            import trio

            return trio.run(receive_all)
        if run == "uvloop":
            import uvloop

            return uvloop.run(receive_all())
        return asyncio.run(receive_all())

    results: dict[int, bytes] = {}

    async def run_one(index: int) -> None:
        results[index] = await anyio.to_thread.run_sync(client_thread, payloads[index])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(run_one, 0)
            task_group.start_soon(run_one, 1)
    assert [hashlib.sha256(results[i]).digest() for i in (0, 1)] == [
        hashlib.sha256(payload).digest() for payload in payloads
    ]
