"""StreamWriter over real connections: delivery without drain(), flow control, errors.

The peer is a plain AnyIO socket stream, so what is checked is what actually
arrives on the wire, independently of portastreams' own reader. Every test
runs on asyncio, uvloop and trio, over loopback TCP and Unix sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import select
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from sockets import Kind, fd_count

import portastreams
from portastreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio


MiB = 1024 * 1024
#: Small socket buffers for the flow-control tests: the kernel fills up fast.
SMALL_BUFFER = 64 * 1024


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def split(data: bytes, seed: int = 1, max_chunk: int = 100_000) -> list[bytes]:
    """Cut ``data`` into pieces of random sizes (1 byte to ``max_chunk``)."""
    rng = random.Random(seed)
    pieces = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, max_chunk)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


class Peer:
    """The far end of a connection: a plain non-blocking socket.

    Deliberately not an AnyIO stream: AnyIO's asyncio TCP streams read
    eagerly into an unbounded queue, which would hide flow control.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    async def receive(self, max_bytes: int = MiB) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at the end of the stream."""
        while True:
            try:
                data = self.sock.recv(max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
            else:
                await anyio.lowlevel.checkpoint()
                return data

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
            else:
                view = view[sent:]
        await anyio.lowlevel.checkpoint()

    def send_eof(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Close so that the connection is reset (SO_LINGER on, timeout 0)."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


async def read_all(peer: Peer) -> bytes:
    """Receive until the end of the stream."""
    data = bytearray()
    while chunk := await peer.receive():
        data += chunk
    return bytes(data)


async def hash_all(peer: Peer) -> tuple[int, str]:
    """Receive until the end of the stream; return its size and sha256."""
    digest = hashlib.sha256()
    size = 0
    while chunk := await peer.receive():
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


async def echo(peer: Peer) -> None:
    """Send back everything received; half-close after the peer does."""
    while chunk := await peer.receive():
        await peer.send(chunk)
    peer.send_eof()


Connection = tuple[StreamReader, StreamWriter, Peer]


@asynccontextmanager
async def connection(
    kind: Kind, directory: Path, *, small_buffers: bool = False
) -> AsyncIterator[Connection]:
    """A portastreams client connected to a plain socket ``Peer``."""
    path = str(directory / "peer.sock")
    family = socket.AF_INET if kind == "tcp" else socket.AF_UNIX
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        if small_buffers:
            # Accepted sockets inherit the listener's receive buffer size.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        listener.bind(("127.0.0.1", 0) if kind == "tcp" else path)
        listener.listen()
        listener.setblocking(False)
        if kind == "tcp":
            port = listener.getsockname()[1]
            reader, writer = await portastreams.open_connection("127.0.0.1", port)
        else:
            reader, writer = await portastreams.open_unix_connection(path)
        if small_buffers:
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER
            )
        await anyio.wait_readable(listener)
        peer = Peer(listener.accept()[0])
    try:
        yield reader, writer, peer
    finally:
        with anyio.CancelScope(shield=True):
            if not writer.is_closing():
                writer.transport.abort()
            with anyio.move_on_after(5):
                await writer.wait_closed()
            peer.close()


# -- data transfer ---------------------------------------------------------


async def test_echo(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with (
            connection(kind, sock_dir) as (reader, writer, peer),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(echo, peer)
            for line in (b"hello\n", b"world\n", b"x" * 1000 + b"\n"):
                writer.write(line)
                await writer.drain()
                assert await reader.readline() == line
            writer.write_eof()
            assert await reader.read() == b""
            assert reader.at_eof()


async def test_8mib_echo_checked_by_sha256(kind: Kind, sock_dir: Path) -> None:
    data = random_bytes(8 * MiB, seed=8)
    received = hashlib.sha256()
    received_size = 0

    async def send_all(writer: StreamWriter) -> None:
        for piece in split(data, seed=2, max_chunk=300_000):
            writer.write(piece)
            await writer.drain()
        writer.write_eof()

    with anyio.fail_after(30):
        async with (
            connection(kind, sock_dir) as (reader, writer, peer),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(echo, peer)
            tg.start_soon(send_all, writer)
            while chunk := await reader.read(100_000):
                received.update(chunk)
                received_size += len(chunk)
    assert received_size == len(data)
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()


# -- delivery without drain() ----------------------------------------------

SIZES = {"small": 10_000, "large": 6 * MiB}


@pytest.fixture(params=["small", "large"])
def payload(request: pytest.FixtureRequest) -> bytes:
    return random_bytes(SIZES[request.param], seed=len(request.param))


async def test_no_drain_write_then_read(kind: Kind, sock_dir: Path) -> None:
    """``write(); await reader.read()`` with an echoing peer: the request goes out."""
    with anyio.fail_after(10):
        async with (
            connection(kind, sock_dir) as (reader, writer, peer),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(echo, peer)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.write(b"a")
            writer.write(b"b")
            writer.writelines([b"c", bytearray(b"d"), memoryview(b"e")])
            assert await reader.readexactly(5) == b"abcde"
            writer.write_eof()


async def test_no_drain_large_write_then_read(kind: Kind, sock_dir: Path) -> None:
    data = random_bytes(3 * MiB, seed=3)
    with anyio.fail_after(20):
        async with (
            connection(kind, sock_dir) as (reader, writer, peer),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(echo, peer)
            for piece in split(data):
                writer.write(piece)
            assert await reader.readexactly(len(data)) == data
            writer.write_eof()
            assert await reader.read() == b""


async def test_no_drain_write_then_close(
    kind: Kind, sock_dir: Path, payload: bytes
) -> None:
    with anyio.fail_after(20):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            for piece in split(payload):
                writer.write(piece)
            writer.close()
            assert writer.is_closing()
            assert await read_all(peer) == payload
            await writer.wait_closed()


async def test_no_drain_single_huge_write_then_close(
    kind: Kind, sock_dir: Path
) -> None:
    data = random_bytes(5 * MiB, seed=5)
    with anyio.fail_after(20):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            writer.write(data)
            writer.close()
            assert await read_all(peer) == data
            await writer.wait_closed()


async def test_no_drain_write_then_write_eof(
    kind: Kind, sock_dir: Path, payload: bytes
) -> None:
    with anyio.fail_after(20):
        async with connection(kind, sock_dir) as (reader, writer, peer):
            for piece in split(payload):
                writer.write(piece)
            writer.write_eof()
            assert not writer.is_closing()
            assert await read_all(peer) == payload
            # The other direction still works after the half-close.
            await peer.send(b"thanks")
            peer.close()
            assert await reader.read() == b"thanks"


async def test_no_drain_write_then_sleep(kind: Kind, sock_dir: Path) -> None:
    """``write(); await anyio.sleep(1)``: everything arrives while the writer sleeps."""
    small = random_bytes(5000, seed=6)
    large = random_bytes(2 * MiB, seed=7)
    expected = small + large + small
    received = bytearray()

    async def collect(peer: Peer) -> None:
        while True:
            received.extend(await peer.receive())

    with anyio.fail_after(10):
        async with (
            connection(kind, sock_dir) as (_reader, writer, peer),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(collect, peer)
            writer.write(small)
            writer.write(large)
            writer.write(small)
            await anyio.sleep(1)
            assert len(received) == len(expected)
            assert received == expected
            assert writer.transport.get_write_buffer_size() == 0
            tg.cancel_scope.cancel()


async def test_writes_keep_their_order(kind: Kind, sock_dir: Path) -> None:
    """Many small and large writes interleaved, with and without drain()."""
    data = random_bytes(3 * MiB, seed=9)
    pieces = split(data, seed=10, max_chunk=200_000)
    with anyio.fail_after(20):
        async with (
            connection(kind, sock_dir) as (_reader, writer, peer),
            anyio.create_task_group() as tg,
        ):
            result: list[bytes] = []

            async def collect() -> None:
                result.append(await read_all(peer))

            tg.start_soon(collect)
            for index, piece in enumerate(pieces):
                writer.write(piece)
                if index % 7 == 0:
                    await writer.drain()
                if index % 11 == 0:
                    await anyio.lowlevel.checkpoint()
            writer.close()
            await writer.wait_closed()
    assert result == [data]


# -- half-close ------------------------------------------------------------


async def test_half_close_peer_reads_eof_and_writes_back(
    kind: Kind, sock_dir: Path
) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (reader, writer, peer):
            assert writer.can_write_eof()
            writer.write(b"request")
            writer.write_eof()
            writer.write_eof()  # a second call is a no-op, as asyncio
            assert await read_all(peer) == b"request"
            await peer.send(b"response 1, ")
            assert await reader.read(100) == b"response 1, "
            await peer.send(b"response 2")
            peer.send_eof()
            assert await reader.read() == b"response 2"
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()


async def test_peer_half_close_client_still_writes(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (reader, writer, peer):
            await peer.send(b"question")
            peer.send_eof()
            assert await reader.read() == b"question"
            writer.write(b"answer")
            writer.close()
            assert await read_all(peer) == b"answer"
            await writer.wait_closed()


# -- flow control ----------------------------------------------------------


def buffer_size(writer: StreamWriter) -> int:
    size: int = writer.transport.get_write_buffer_size()
    return size


def kernel_accepts_more(writer: StreamWriter) -> bool:
    """True if the client socket is writable (room in the kernel send buffer)."""
    sock = writer.get_extra_info("socket")
    _, writable, _ = select.select([], [sock.fileno()], [], 0)
    return bool(writable)


async def fill_until_blocked(writer: StreamWriter) -> tuple[int, hashlib._Hash]:
    """Write (draining after each write) until the kernel buffers are full.

    Returns how much was written and its hash. "Blocked" means ``drain()``
    is waiting and the socket is not writable, twice 50 ms apart: the peer
    does not read, so nothing can move any more.
    """
    block = random_bytes(128 * 1024, seed=11)
    digest = hashlib.sha256()
    total = 0
    index = 0
    while total < 64 * MiB:
        data = index.to_bytes(8, "big") + block
        index += 1
        writer.write(data)
        digest.update(data)
        total += len(data)
        with anyio.move_on_after(0.05) as scope:
            await writer.drain()
        if scope.cancelled_caught and not kernel_accepts_more(writer):
            await anyio.sleep(0.05)
            if not kernel_accepts_more(writer):
                return total, digest
    pytest.fail("drain() never blocked although the peer does not read")


async def test_drain_waits_while_over_high_water(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(30):
        async with connection(kind, sock_dir, small_buffers=True) as conn:
            _reader, writer, peer = conn
            low, high = writer.transport.get_write_buffer_limits()
            assert (low, high) == (16 * 1024, 64 * 1024)
            total, digest = await fill_until_blocked(writer)
            assert buffer_size(writer) > high

            sizes_at_return: list[int] = []
            drained = anyio.Event()

            async def drain() -> None:
                await writer.drain()
                sizes_at_return.append(buffer_size(writer))
                drained.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                with anyio.move_on_after(0.3):
                    await drained.wait()
                # The peer does not read: drain() must still be waiting.
                assert not drained.is_set()
                assert buffer_size(writer) > high

                result: list[tuple[int, str]] = []

                async def consume() -> None:
                    result.append(await hash_all(peer))

                tg.start_soon(consume)
                await drained.wait()
                # drain() returns once the buffer fell to the low-water mark.
                assert sizes_at_return[0] <= low
                writer.close()
            await writer.wait_closed()
            assert buffer_size(writer) == 0
    assert result == [(total, digest.hexdigest())]


async def test_concurrent_drains_all_wake(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(30):
        async with connection(kind, sock_dir, small_buffers=True) as conn:
            _reader, writer, peer = conn
            total, digest = await fill_until_blocked(writer)
            woken: list[int] = []

            async def drain(number: int) -> None:
                await writer.drain()
                woken.append(number)

            result: list[tuple[int, str]] = []

            async def consume() -> None:
                result.append(await hash_all(peer))

            async with anyio.create_task_group() as tg:
                for number in range(5):
                    tg.start_soon(drain, number)
                await anyio.sleep(0.2)
                assert woken == []
                tg.start_soon(consume)
                with anyio.fail_after(10):
                    while len(woken) < 5:
                        await anyio.sleep(0.01)
                assert sorted(woken) == [0, 1, 2, 3, 4]
                writer.close()
    assert result == [(total, digest.hexdigest())]


async def test_write_buffer_size_is_observable(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(20):
        async with connection(kind, sock_dir, small_buffers=True) as conn:
            _reader, writer, peer = conn
            assert buffer_size(writer) == 0
            total, _digest = await fill_until_blocked(writer)
            before = buffer_size(writer)
            assert before > 0
            writer.write(b"z" * 1000)
            assert buffer_size(writer) == before + 1000
            async with anyio.create_task_group() as tg:
                result: list[tuple[int, str]] = []

                async def consume() -> None:
                    result.append(await hash_all(peer))

                tg.start_soon(consume)
                while buffer_size(writer) > 0:
                    await anyio.sleep(0.01)
                writer.close()
            assert result[0][0] == total + 1000


async def test_set_write_buffer_limits(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (_reader, writer, _peer):
            transport = writer.transport
            assert transport.get_write_buffer_limits() == (16384, 65536)
            transport.set_write_buffer_limits(high=1000)
            assert transport.get_write_buffer_limits() == (250, 1000)
            transport.set_write_buffer_limits(low=100)
            assert transport.get_write_buffer_limits() == (100, 400)
            transport.set_write_buffer_limits(high=300, low=300)
            assert transport.get_write_buffer_limits() == (300, 300)
            transport.set_write_buffer_limits(0, 0)
            assert transport.get_write_buffer_limits() == (0, 0)
            transport.set_write_buffer_limits()
            assert transport.get_write_buffer_limits() == (16384, 65536)
            with pytest.raises(ValueError, match=r"high \(10\) must be >= low \(20\)"):
                transport.set_write_buffer_limits(high=10, low=20)
            with pytest.raises(ValueError, match="must be >= 0"):
                transport.set_write_buffer_limits(high=-4)
            # A failed call changes nothing.
            assert transport.get_write_buffer_limits() == (16384, 65536)


async def test_drain_with_high_water_zero_waits_until_sent(
    kind: Kind, sock_dir: Path
) -> None:
    data = random_bytes(4 * MiB, seed=12)
    with anyio.fail_after(20):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            writer.transport.set_write_buffer_limits(high=0)
            async with anyio.create_task_group() as tg:
                result: list[bytes] = []

                async def collect() -> None:
                    result.append(await read_all(peer))

                tg.start_soon(collect)
                writer.write(data)
                await writer.drain()
                assert buffer_size(writer) == 0
                writer.close()
    assert result == [data]


# -- connection failures -----------------------------------------------------


async def assert_fds_return_to(baseline: int) -> None:
    """The descriptor count comes back to ``baseline`` (closing can take a tick)."""
    with anyio.move_on_after(2):
        while fd_count() > baseline:
            await anyio.sleep(0.01)
    assert fd_count() == baseline


async def test_peer_reset_during_read(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (reader, writer, peer):
            # Measured while connected: backends may open descriptors lazily
            # (uvloop opens /dev/null once per loop).
            connected = fd_count()
            errors: list[BaseException] = []

            async def read() -> None:
                try:
                    await reader.read(100)
                except OSError as exc:
                    errors.append(exc)

            # Unread data makes the close a reset on Unix sockets too.
            writer.write(b"never read")
            await anyio.wait_readable(peer.sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await anyio.sleep(0.05)
                peer.reset()
            assert len(errors) == 1
            assert isinstance(errors[0], (ConnectionResetError, BrokenPipeError))
            # Every later read and drain() reports the failure too.
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                await reader.read(100)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                await writer.drain()
            writer.close()
            await writer.wait_closed()
    # The client's socket and the peer's are gone.
    await assert_fds_return_to(connected - 2)


async def test_peer_reset_during_write(kind: Kind, sock_dir: Path) -> None:
    block = b"w" * 65536
    with anyio.fail_after(10):
        async with connection(kind, sock_dir, small_buffers=True) as conn:
            _reader, writer, peer = conn
            connected = fd_count()

            async def reset_soon() -> None:
                await anyio.sleep(0.1)
                peer.reset()

            written = 0

            async def write_until_error() -> None:
                nonlocal written
                while True:
                    writer.write(block)
                    written += len(block)
                    await writer.drain()

            async with anyio.create_task_group() as tg:
                tg.start_soon(reset_soon)
                writer.write(block)
                assert await peer.receive(10)  # the client is writing
                with pytest.raises((ConnectionResetError, BrokenPipeError)):
                    await write_until_error()
            assert written > 0
            assert writer.is_closing()
            # drain() keeps raising; write() drops data silently (as asyncio).
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                await writer.drain()
            writer.write(b"dropped")
            writer.close()
            await writer.wait_closed()
    await assert_fds_return_to(connected - 2)


async def test_wait_closed_after_peer_left(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (reader, writer, peer):
            peer.close()
            assert await reader.read() == b""
            writer.write(b"nobody listens")
            writer.close()
            await writer.wait_closed()  # does not raise
            await writer.wait_closed()  # and can be awaited again
            assert writer.is_closing()


async def test_drain_after_close_raises_connection_lost(
    kind: Kind, sock_dir: Path
) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            writer.write(b"bye")
            writer.close()
            await writer.wait_closed()
            assert await read_all(peer) == b"bye"
            with pytest.raises(ConnectionResetError):
                await writer.drain()


async def test_abort_drops_queued_data_and_closes(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir, small_buffers=True) as conn:
            _reader, writer, peer = conn
            total, _digest = await fill_until_blocked(writer)
            pending = buffer_size(writer)
            assert pending > 0
            writer.transport.abort()
            assert writer.is_closing()
            await writer.wait_closed()
            assert buffer_size(writer) == 0
            received = 0
            with contextlib.suppress(ConnectionResetError):
                while chunk := await peer.receive():
                    received += len(chunk)
            # What was still buffered in user space never went out.
            assert 0 < received <= total - pending


# -- extra info, misuse ------------------------------------------------------


async def test_get_extra_info(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            sock = writer.get_extra_info("socket")
            peer_sock = peer.sock
            assert sock is not None
            assert sock.type == socket.SOCK_STREAM
            assert sock.family == (socket.AF_INET if kind == "tcp" else socket.AF_UNIX)
            assert writer.get_extra_info("sockname") == sock.getsockname()
            assert writer.get_extra_info("peername") == sock.getpeername()
            assert writer.get_extra_info("peername") == peer_sock.getsockname()
            assert writer.get_extra_info("sockname") == peer_sock.getpeername()
            if kind == "tcp":
                assert writer.get_extra_info("peername") == (
                    "127.0.0.1",
                    peer_sock.getsockname()[1],
                )
            else:
                assert writer.get_extra_info("peername") == str(sock_dir / "peer.sock")
            assert writer.transport.get_extra_info("peername") == sock.getpeername()
            assert writer.get_extra_info("no such thing") is None
            assert writer.get_extra_info("no such thing", 42) == 42
            # No TLS here: the TLS names answer the default.
            assert writer.get_extra_info("sslcontext") is None
            assert writer.get_extra_info("ssl_object", "none") == "none"
            assert writer.get_extra_info("peercert", ()) == ()


async def test_write_rejects_str(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            with pytest.raises(TypeError, match="bytes-like"):
                writer.write("text")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="bytes-like"):
                writer.write(12)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                writer.writelines(["text"])  # type: ignore[list-item]
            writer.write(b"")  # empty writes are fine
            writer.write(b"ok")
            writer.close()
            # The rejected data never went out.
            assert await read_all(peer) == b"ok"


async def test_write_after_write_eof_raises(kind: Kind, sock_dir: Path) -> None:
    with anyio.fail_after(10):
        async with connection(kind, sock_dir) as (_reader, writer, peer):
            assert writer.can_write_eof()
            writer.write(b"data")
            writer.write_eof()
            with pytest.raises(RuntimeError, match=r"write\(\) after write_eof\(\)"):
                writer.write(b"more")
            assert await read_all(peer) == b"data"
