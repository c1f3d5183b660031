"""Cancellation safety: a cancelled read consumes nothing, on every backend.

Every read method is cancelled while it waits, with every cancellation
mechanism the backend offers (AnyIO scopes and deadlines everywhere, trio's
own scopes on trio, ``asyncio.timeout`` / ``asyncio.wait_for`` /
``Task.cancel`` on asyncio and uvloop), in feed mode, in source mode over a
memory object stream and over a TCP socket. Then the same read, not
cancelled, must see every byte in order.

A property test then cancels random reads at random points of random
chunked input and checks that nothing is lost or duplicated.

One caveat, which belongs to AnyIO rather than portastreams: AnyIO's memory
object stream drops an item handed to a receiver whose asyncio task is then
cancelled natively (``Task.cancel``) before it runs. So over memory streams
the "data arrives just as the read is cancelled" race is only exercised with
AnyIO cancellation, which is safe; in feed mode it is exercised with every
mechanism.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trio
from anyio.abc import SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portastreams import IncompleteReadError, LimitOverrunError, StreamReader

pytestmark = pytest.mark.anyio

Read = Callable[[], Awaitable[bytes]]
Mode = Literal["feed", "memory", "socket"]
MODES: list[Mode] = ["feed", "memory", "socket"]

# -- byte sources ------------------------------------------------------------------------------


class MemoryByteStream(anyio.abc.ByteReceiveStream):
    """A byte stream over a memory object stream; logs what it hands out."""

    def __init__(self, items: MemoryObjectReceiveStream[bytes]) -> None:
        self.items = items
        self.pending = b""
        self.log: list[bytes] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.pending:
            self.pending = await self.items.receive()
        else:
            await anyio.lowlevel.checkpoint()
        chunk, self.pending = self.pending[:max_bytes], self.pending[max_bytes:]
        self.log.append(chunk)
        return chunk

    async def aclose(self) -> None:
        await self.items.aclose()


class Source:
    """Where a reader's bytes come from, and how the test supplies them."""

    reader: StreamReader

    def waiting(self) -> bool:
        """Is the reader blocked until the test supplies more?"""
        return self.reader._waiter is not None

    async def settle(self) -> None:
        """Let the reader run until it is blocked (or no read is running)."""
        for _ in range(10_000):
            if self.waiting():
                return
            await anyio.lowlevel.checkpoint()

    async def feed(self, chunk: bytes, *, settle: bool = True) -> None:
        """Supply ``chunk``; with ``settle``, return once the reader has reacted."""
        raise NotImplementedError

    async def end(self) -> None:
        raise NotImplementedError


class FeedSource(Source):
    def __init__(self, limit: int = 2**16) -> None:
        self.reader = StreamReader(limit)

    async def feed(self, chunk: bytes, *, settle: bool = True) -> None:
        self.reader.feed_data(chunk)
        if settle:
            await self.settle()

    async def end(self) -> None:
        self.reader.feed_eof()


class MemorySource(Source):
    def __init__(self, limit: int = 2**16) -> None:
        self.send: MemoryObjectSendStream[bytes]
        self.send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        self.stream = MemoryByteStream(receive)
        self.reader = StreamReader.from_stream(self.stream, limit=limit)

    def waiting(self) -> bool:
        # A receiver parked on an empty stream; a hand-off unparks it at once.
        statistics = self.send.statistics()
        return (
            statistics.tasks_waiting_receive > 0 and statistics.current_buffer_used == 0
        )

    async def feed(self, chunk: bytes, *, settle: bool = True) -> None:
        self.send.send_nowait(chunk)
        if settle:
            await self.settle()

    async def end(self) -> None:
        self.send.close()

    def close(self) -> None:
        self.send.close()
        self.stream.items.close()


class SocketSource(Source):
    def __init__(
        self, peer: anyio.abc.SocketStream, stream: anyio.abc.SocketStream
    ) -> None:
        self.peer = peer
        self.reader = StreamReader.from_stream(stream)
        self.unread = 0  # bytes sent since the reader's buffer was last empty

    async def feed(self, chunk: bytes, *, settle: bool = True) -> None:
        await self.peer.send(chunk)
        self.unread += len(chunk)
        if settle:
            # Only used while one read waits, which consumes nothing.
            with anyio.fail_after(5):
                while len(self.reader._buffer) < self.unread:
                    await anyio.sleep(0.001)

    async def end(self) -> None:
        await self.peer.send_eof()


@asynccontextmanager
async def source_for(mode: Mode) -> AsyncIterator[Source]:
    if mode == "feed":
        yield FeedSource()
    elif mode == "memory":
        memory = MemorySource()
        try:
            yield memory
        finally:
            memory.close()
    else:
        with anyio.fail_after(10):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
            async with listener:
                socket_listener = listener.listeners[0]
                assert isinstance(socket_listener, anyio.abc.SocketListener)
                port = socket_listener.extra(SocketAttribute.local_port)
                client = await anyio.connect_tcp("127.0.0.1", port)
                server = await socket_listener.accept()
        async with client, server:
            server.extra(SocketAttribute.raw_socket).setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            yield SocketSource(server, client)


# -- cancellation mechanisms ----------------------------------------------------------------------

#: How long asyncio.wait_for waits: the only mechanism whose deadline cannot
#: be moved, so the test must feed the read within this time.
WAIT_FOR_TIMEOUT = 0.15


class Run:
    """One read under one cancellation mechanism."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.result: bytes | None = None
        self.error: Exception | None = None
        self.cancelled = False
        self.finished = anyio.Event()
        self.trigger: Callable[[], None] = lambda: None
        self.native = mechanism == "asyncio.Task.cancel"

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    def start(self, task_group: anyio.abc.TaskGroup, read: Read) -> None:
        if self.native:
            task = asyncio.get_running_loop().create_task(self._native(read))

            def cancel_task() -> None:
                task.cancel()

            self.trigger = cancel_task
        else:
            task_group.start_soon(self._guarded, read)

    async def _native(self, read: Read) -> None:
        try:
            self.result = await read()
        except asyncio.CancelledError:
            self.cancelled = True
        except Exception as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def _guarded(self, read: Read) -> None:
        try:
            await self._under_mechanism(read)
        except Exception as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def _under_mechanism(self, read: Read) -> None:
        mechanism = self.mechanism
        if mechanism == "anyio.CancelScope.cancel":
            with anyio.CancelScope() as scope:
                self.trigger = scope.cancel
                self.result = await read()
            self.cancelled = scope.cancelled_caught
        elif mechanism == "anyio.move_on_after":
            with anyio.move_on_after(math.inf) as scope:
                self.trigger = lambda: setattr(scope, "deadline", anyio.current_time())
                self.result = await read()
            self.cancelled = scope.cancelled_caught
        elif mechanism == "anyio.move_on_after(0)":
            with anyio.move_on_after(0) as scope:
                self.result = await read()
            self.cancelled = scope.cancelled_caught
        elif mechanism == "anyio.fail_after":
            try:
                with anyio.fail_after(math.inf) as scope:
                    self.trigger = lambda: setattr(
                        scope, "deadline", anyio.current_time()
                    )
                    self.result = await read()
            except TimeoutError:
                self.cancelled = True
        elif mechanism == "trio.move_on_after":
            with trio.move_on_after(math.inf) as trio_scope:
                self.trigger = lambda: setattr(
                    trio_scope, "deadline", trio.current_time()
                )
                self.result = await read()
            self.cancelled = trio_scope.cancelled_caught
        elif mechanism == "trio.CancelScope.cancel":
            with trio.CancelScope() as trio_scope:
                self.trigger = trio_scope.cancel
                self.result = await read()
            self.cancelled = trio_scope.cancelled_caught
        elif mechanism == "asyncio.wait_for":
            try:
                self.result = await asyncio.wait_for(read(), WAIT_FOR_TIMEOUT)
            except asyncio.TimeoutError:
                self.cancelled = True
        elif mechanism == "asyncio.timeout" and sys.version_info >= (3, 11):
            try:
                async with asyncio.timeout(None) as timeout:
                    loop = asyncio.get_running_loop()
                    self.trigger = lambda: timeout.reschedule(loop.time())
                    self.result = await read()
            except TimeoutError:
                self.cancelled = True
        else:  # pragma: no cover
            raise AssertionError(f"unknown mechanism {mechanism}")


async def settle(source: Source, run: Run) -> None:
    """Run until ``run`` has finished or its read is blocked waiting for data."""
    for _ in range(10_000):
        if run.done or source.waiting():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError(f"{run.mechanism}: the read neither finished nor waited")


def mechanisms_for(backend_name: str) -> list[str]:
    """Every cancellation mechanism available on this backend."""
    names = ["anyio.CancelScope.cancel", "anyio.move_on_after", "anyio.fail_after"]
    if backend_name == "trio":
        names += ["trio.move_on_after", "trio.CancelScope.cancel"]
    else:
        names += ["asyncio.wait_for", "asyncio.Task.cancel"]
        if sys.version_info >= (3, 11):
            names.append("asyncio.timeout")
    return names


# -- every read, every mechanism, every mode ---------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A read that waits through ``before`` and is then cancelled.

    Afterwards ``after`` and EOF are supplied and the same read must return
    ``expected``; ``read(-1)`` then returns the rest.
    """

    name: str
    read: Callable[[StreamReader], Awaitable[bytes]]
    before: tuple[bytes, ...]
    after: tuple[bytes, ...]
    expected: bytes


SCENARIOS = [
    Scenario("read(n)", lambda r: r.read(10), (), (b"abcdef",), b"abcdef"),
    Scenario("read()", lambda r: r.read(), (b"ab", b"cd"), (b"ef",), b"abcdef"),
    Scenario(
        "readline", lambda r: r.readline(), (b"ab", b"cd"), (b"e\nf",), b"abcde\n"
    ),
    Scenario(
        "readexactly",
        lambda r: r.readexactly(7),
        (b"ab", b"cd"),
        (b"efgh",),
        b"abcdefg",
    ),
    Scenario(
        "readuntil", lambda r: r.readuntil(b"\r\n"), (b"ab\r",), (b"\nz",), b"ab\r\n"
    ),
    Scenario(
        "readuntil(tuple)",
        lambda r: r.readuntil((b"!!", b"??")),
        (b"ab!", b"?"),
        (b"?z",),
        b"ab!??",
    ),
    Scenario("receive", lambda r: r.receive(), (), (b"xyz",), b"xyz"),
]


async def cancel_one_read(
    source: Source, scenario: Scenario, mechanism: str, mode: Mode
) -> None:
    reader = source.reader
    where = f"{scenario.name} cancelled by {mechanism} ({mode})"
    run = Run(mechanism)
    # The last chunk goes in just before the cancellation, before the read
    # has run again -- except where only settled hand-offs are safe (see the
    # module docstring) or observable (sockets).
    race = mode == "feed" or (mode == "memory" and not run.native)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as task_group:
            run.start(task_group, lambda: scenario.read(reader))
            await settle(source, run)
            for index, chunk in enumerate(scenario.before):
                last = index == len(scenario.before) - 1
                await source.feed(chunk, settle=not (race and last))
            assert not run.done, where
            run.trigger()
            await run.finished.wait()
    assert run.cancelled, where
    assert run.result is None, where
    assert run.error is None, where
    assert reader._waiter is None, where
    before = b"".join(scenario.before)
    if mode == "memory" and race:
        # The last chunk may still wait in the memory stream.
        assert before.startswith(bytes(reader._buffer)), where
    else:
        assert bytes(reader._buffer) == before, where
    for chunk in scenario.after:
        await source.feed(chunk, settle=False)
    await source.end()
    with anyio.fail_after(5):
        assert await scenario.read(reader) == scenario.expected, where
        rest = await reader.read()
    assert scenario.expected + rest == before + b"".join(scenario.after), where


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.parametrize("mode", MODES)
async def test_a_cancelled_read_consumes_nothing(
    mode: Mode, scenario: Scenario, backend_name: str
) -> None:
    mechanisms = mechanisms_for(backend_name)
    assert len(mechanisms) >= 4
    for mechanism in mechanisms:
        async with source_for(mode) as source:
            await cancel_one_read(source, scenario, mechanism, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_a_zero_deadline_cancels_only_a_read_that_must_wait(mode: Mode) -> None:
    async with source_for(mode) as source:
        reader = source.reader
        # Answered from the buffer: no checkpoint is reached, nothing cancelled.
        # (Over the socket, one small send arrives in one receive.)
        await source.feed(b"line\nrest", settle=False)
        with anyio.fail_after(5):
            assert await reader.readline() == b"line\n"
        with anyio.move_on_after(0) as scope:
            assert await reader.readline() == b"rest"  # pragma: no cover
        assert scope.cancelled_caught
        with anyio.move_on_after(0) as scope:
            assert await reader.readexactly(4) == b"rest"
        assert not scope.cancelled_caught
        with anyio.move_on_after(0) as scope:
            await reader.read(1)  # pragma: no cover
        assert scope.cancelled_caught
        await source.feed(b"ok\n", settle=False)
        await source.end()
        with anyio.fail_after(5):
            assert await reader.read() == b"ok\n"


async def test_cancelled_reads_in_a_row_then_everything_in_order(
    backend_name: str,
) -> None:
    """Many waits, many cancellations, one chunk at a time: no byte lost."""
    mechanisms = [m for m in mechanisms_for(backend_name) if m != "asyncio.wait_for"]
    for mode in MODES:
        async with source_for(mode) as source:
            reader = source.reader
            for number, chunk in enumerate([b"a", b"b", b"c", b"d"], start=1):
                for index, mechanism in enumerate(mechanisms):
                    run = Run(mechanism)
                    with anyio.fail_after(5):
                        async with anyio.create_task_group() as task_group:
                            run.start(task_group, partial(reader.readexactly, 100))
                            await settle(source, run)
                            if index == 0:  # the chunk arrives during the first
                                await source.feed(chunk)
                            run.trigger()
                    assert run.cancelled, (mode, mechanism)
                    assert len(reader._buffer) == number, (mode, mechanism)
            await source.end()
            with anyio.fail_after(5), pytest.raises(IncompleteReadError) as caught:
                await reader.readexactly(100)
            assert caught.value.partial == b"abcd"


# -- the property -------------------------------------------------------------------------------

CancelKind = Literal["scope", "deadline", "zero", "native"]


@dataclass(frozen=True)
class RandomRead:
    """A read, and when to cancel it: after ``after`` waits, maybe racing a chunk."""

    method: str
    arg: int | bytes | tuple[bytes, ...] | None
    cancel: CancelKind | None
    after: int
    race: bool


separators = st.one_of(
    st.sampled_from([b"\n", b"\r\n", b"ab", b"xyz"]),
    st.lists(
        st.sampled_from([b"\n", b"b", b"\r\n", b"ba"]), min_size=1, max_size=3
    ).map(tuple),
)
read_calls = st.one_of(
    st.tuples(st.just("read"), st.integers(-1, 20)),
    st.tuples(st.just("readline"), st.none()),
    st.tuples(st.just("readexactly"), st.integers(0, 20)),
    st.tuples(st.just("readuntil"), separators),
)


def random_read(
    call: tuple[str, int | bytes | tuple[bytes, ...] | None],
    cancel: CancelKind | None,
    after: int,
    race: bool,
) -> RandomRead:
    method, arg = call
    if method == "read" and isinstance(arg, int) and arg < 0 and cancel is None:
        arg = 5  # an uncancelled read(-1) would end the example early
    return RandomRead(method, arg, cancel, after, race)


random_reads = st.builds(
    random_read,
    read_calls,
    st.sampled_from([None, "scope", "deadline", "zero", "native"]),
    st.integers(0, 2),
    st.booleans(),
)
data_pieces = st.one_of(
    st.sampled_from([b"\n", b"\r\n", b"ab", b"xyz", b"0123456789"]),
    st.binary(min_size=1, max_size=5),
)


@dataclass
class Outcome:
    result: bytes | None = None
    error: Exception | None = None
    cancelled: bool = False


def call(reader: StreamReader, read: RandomRead) -> Awaitable[bytes]:
    if read.method == "read":
        assert isinstance(read.arg, int)
        return reader.read(read.arg)
    if read.method == "readline":
        return reader.readline()
    if read.method == "readexactly":
        assert isinstance(read.arg, int)
        return reader.readexactly(read.arg)
    assert isinstance(read.arg, (bytes, tuple))
    return reader.readuntil(read.arg)


def mechanism_for(kind: CancelKind | None, backend_name: str) -> str:
    return {
        None: "anyio.CancelScope.cancel",  # never triggered
        "scope": "anyio.CancelScope.cancel",
        "deadline": "anyio.move_on_after",
        "zero": "anyio.move_on_after(0)",
        "native": "trio.CancelScope.cancel"
        if backend_name == "trio"
        else "asyncio.Task.cancel",
    }[kind]


@pytest.mark.parametrize("mode", ["feed", "memory"])
# backend_name is a plain string: sharing it between examples is harmless.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunk_list=st.lists(
        st.lists(data_pieces, min_size=1, max_size=3).map(b"".join), max_size=15
    ),
    limit=st.one_of(st.integers(1, 12), st.just(2**16)),
    reads=st.lists(random_reads, min_size=1, max_size=12),
)
async def test_random_cancellations_lose_and_duplicate_nothing(
    mode: Mode,
    backend_name: str,
    chunk_list: list[bytes],
    limit: int,
    reads: list[RandomRead],
) -> None:
    data = b"".join(chunk_list)
    chunks = deque(chunk_list)
    source: FeedSource | MemorySource = (
        FeedSource(limit) if mode == "feed" else MemorySource(limit)
    )
    reader = source.reader
    out = bytearray()
    eof = False
    cancelled = 0
    cancelled_holding_data = 0
    try:
        for read in reads:
            mechanism = mechanism_for(read.cancel, backend_name)
            run = Run(mechanism)
            # Native asyncio cancellation must not race a memory-stream
            # hand-off (AnyIO's memory stream would drop the item).
            race = read.race and not (mode == "memory" and run.native)
            before = bytes(reader._buffer)
            fed: list[bytes] = []
            log_mark = len(source.stream.log) if isinstance(source, MemorySource) else 0
            with anyio.fail_after(2):
                async with anyio.create_task_group() as task_group:
                    run.start(task_group, partial(call, reader, read))
                    waits = 0
                    while True:
                        await settle(source, run)
                        if run.done:
                            break
                        if read.cancel is not None and waits == read.after:
                            if race and chunks and not eof:
                                chunk = chunks.popleft()
                                fed.append(chunk)
                                await source.feed(chunk, settle=False)
                            run.trigger()
                            await run.finished.wait()
                            break
                        if chunks:
                            chunk = chunks.popleft()
                            fed.append(chunk)
                            await source.feed(chunk, settle=False)
                        elif not eof:
                            eof = True
                            await source.end()
                        else:
                            raise AssertionError("a read waits after EOF")
                        waits += 1
            if isinstance(source, MemorySource):
                arrived = b"".join(source.stream.log[log_mark:])
            else:
                arrived = b"".join(fed)
            available = before + arrived
            left = bytes(reader._buffer)
            assert available.endswith(left)
            taken = available[: len(available) - len(left)]
            if run.cancelled:
                cancelled += 1
                cancelled_holding_data += bool(available)
                assert run.result is None
                assert taken == b"", "a cancelled read consumed data"
            elif run.error is None:
                assert run.result is not None
                assert taken == run.result
                out += run.result
            elif isinstance(run.error, IncompleteReadError):
                assert taken == run.error.partial
                out += run.error.partial
            elif isinstance(run.error, LimitOverrunError):
                assert taken == b""
            elif isinstance(run.error, ValueError) and read.method == "readline":
                out += taken  # the dropped over-long line
            else:
                raise AssertionError(f"unexpected {run.error!r}")
        while chunks:
            await source.feed(chunks.popleft(), settle=False)
        if not eof:
            await source.end()
        with anyio.fail_after(2):
            out += await reader.read()
    finally:
        if isinstance(source, MemorySource):
            source.close()
    assert bytes(out) == data
    assert reader.at_eof()
    event(f"{min(cancelled, 3)}{'+' if cancelled >= 3 else ''} reads cancelled")
    if cancelled_holding_data:
        event("a read was cancelled after data had arrived for it")


@pytest.mark.parametrize("then", ["set_exception", "feed_data", "feed_eof"])
async def test_feeding_a_cancelled_read_before_it_unwinds(then: str) -> None:
    """A read cancelled while it waits, then fed (data, EOF or an error) in
    the same step, before its task has unwound: the feeder does not fail,
    the read is cancelled, and the next read gets what was fed."""
    reader = StreamReader()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(reader.readline)
        await anyio.wait_all_tasks_blocked()
        task_group.cancel_scope.cancel()
        # Nothing has run since: the waiting read is cancelled, not gone.
        if then == "set_exception":
            reader.set_exception(ConnectionResetError("fed"))
        elif then == "feed_data":
            reader.feed_data(b"line\n")
        else:
            reader.feed_eof()
    if then == "set_exception":
        with pytest.raises(ConnectionResetError, match=r"^fed$"):
            await reader.readline()
    elif then == "feed_data":
        assert await reader.readline() == b"line\n"
    else:
        assert await reader.readline() == b""
