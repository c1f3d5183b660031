"""Differential property tests: portastreams' StreamReader against CPython's.

Hypothesis generates a byte string (biased towards separators), a way to cut
it into chunks, a ``limit`` and a script of operations. The script runs once
against CPython's own ``asyncio.StreamReader`` (the reference) and once
against ``portastreams.StreamReader`` on the backend under test, and every
step must agree: the bytes returned or the exception raised (type, message,
``partial`` / ``expected`` / ``consumed``), what is left in the buffer and
``at_eof()``.

Both readers are fed the same chunks at the same points relative to the
reads, because ``LimitOverrunError.consumed`` depends on how much was buffered
when the limit was checked. The driver starts a read, lets it run until it
either finishes or waits for data, and only then feeds the next chunk (or
EOF when the chunks run out, or ``set_exception`` when the script says so).

The portastreams reader runs in three modes. Fed, as above. In source mode,
where it receives from a stream itself: a chunk the driver gives while a
read waits is what that read's next ``receive()`` returns (then the reader
slices reads out of the chunk it received, its "head"), and EOF is the
stream's end. And pulled, on trio: a connection's reader on a real socket,
whose reads receive themselves; the driver sends the chunk from the other
end, or shuts it down. Chunks given between reads are fed in every mode, as
to the reference.

The reference reader is stepped by hand: its coroutine is advanced with
``send(None)`` and "waiting" means it yielded its ``_waiter`` future, which
belongs to a private event loop that never runs. This keeps the reference
exact and deterministic while the portastreams side runs for real on asyncio,
uvloop and trio.

CPython gained tuple separators for ``readuntil`` in 3.13; on older Pythons
the reference is ``asyncio.StreamReader`` with 3.13's ``readuntil`` (the only
StreamReader method that changed between 3.10 and 3.13).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import portastreams

pytestmark = pytest.mark.anyio

DEFAULT_LIMIT = 2**16

# -- the reference reader -----------------------------------------------------

if sys.version_info >= (3, 13):
    ReferenceReader: type[asyncio.StreamReader] = asyncio.StreamReader
else:

    class ReferenceReader(asyncio.StreamReader):
        """``asyncio.StreamReader`` with CPython 3.13's ``readuntil``."""

        async def readuntil(  # type: ignore[override]
            self, separator: bytes | tuple[bytes, ...] = b"\n"
        ) -> bytes:
            # Verbatim from CPython 3.13 Lib/asyncio/streams.py (comments
            # trimmed); ``this`` is ``self`` without static types.
            this: Any = self
            if isinstance(separator, tuple):
                separators = sorted(separator, key=len)
            else:
                separators = [separator]
            if not separators:
                raise ValueError("Separator should contain at least one element")
            min_seplen = len(separators[0])
            max_seplen = len(separators[-1])
            if min_seplen == 0:
                raise ValueError("Separator should be at least one-byte string")

            if this._exception is not None:
                raise this._exception

            offset = 0
            while True:
                buflen = len(this._buffer)
                if buflen - offset >= min_seplen:
                    match_start = None
                    match_end = None
                    for sep in separators:
                        isep = this._buffer.find(sep, offset)
                        if isep != -1:
                            end = isep + len(sep)
                            if match_end is None or end < match_end:
                                match_end = end
                                match_start = isep
                    if match_end is not None:
                        break
                    offset = max(0, buflen + 1 - max_seplen)
                    if offset > this._limit:
                        raise asyncio.LimitOverrunError(
                            "Separator is not found, and chunk exceed the limit",
                            offset,
                        )
                if this._eof:
                    chunk = bytes(this._buffer)
                    this._buffer.clear()
                    raise asyncio.IncompleteReadError(chunk, None)
                await this._wait_for_data("readuntil")

            assert match_start is not None
            if match_start > this._limit:
                raise asyncio.LimitOverrunError(
                    "Separator is found, but chunk is longer than limit", match_start
                )
            chunk = this._buffer[:match_end]
            del this._buffer[:match_end]
            this._maybe_resume_transport()
            return bytes(chunk)


# -- scripts ------------------------------------------------------------------

Separator = bytes | tuple[bytes, ...]
Method = Literal["read", "readline", "readexactly", "readuntil"]


@dataclass(frozen=True)
class Read:
    """One read call.

    ``exc_after``: once the read has waited after this many feeds, call
    ``set_exception`` instead of feeding. ``probe``: a second read started
    while this one waits (it must finish at once, usually with
    ``RuntimeError``).
    """

    method: Method
    arg: int | Separator | None = None
    exc_after: int | None = None
    probe: Read | None = None


@dataclass(frozen=True)
class Feed:
    """Feed the next ``count`` chunks while no read is running."""

    count: int


@dataclass(frozen=True)
class FeedEof:
    pass


@dataclass(frozen=True)
class SetException:
    kind: int


Op = Read | Feed | FeedEof | SetException


@dataclass(frozen=True)
class Script:
    limit: int
    chunks: tuple[bytes, ...]
    ops: tuple[Op, ...]
    #: Attach a fake transport and compare pause_reading/resume_reading calls.
    transport: bool = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


#: Exceptions a script may pass to ``set_exception``. Index 0 is the one used
#: in the middle of a read. asyncio's own read errors are included because
#: ``readline`` treats them specially.
EXCEPTION_FACTORIES: Sequence[Callable[[], BaseException]] = (
    lambda: ConnectionResetError("connection reset in the middle"),
    lambda: asyncio.IncompleteReadError(b"xy", 3),
    lambda: asyncio.LimitOverrunError("injected overrun", 1),
    lambda: ValueError("injected"),
)

PIECES = (
    *(b"\n", b"\r\n", b"ab", b"a", b"b", b"\r", b"xyz", b"\n\n", b"abab"),
    *(b"0123456789", b"x" * 25),  # long runs without a separator
)
SEPARATORS = (b"\n", b"\r\n", b"ab", b"b", b"ba", b"\n\n", b"xyz", b"abab", b"\r")
BAD_SEPARATORS: tuple[Separator, ...] = (b"", (), (b"",), (b"\n", b""))

data_strategy = st.lists(
    st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=6)),
    max_size=30,
).map(b"".join)

single_separator = st.one_of(
    st.sampled_from(SEPARATORS), st.binary(min_size=1, max_size=3)
)
separator_strategy: st.SearchStrategy[Separator] = st.one_of(
    single_separator,
    single_separator,
    st.lists(single_separator, min_size=1, max_size=3).map(tuple),
    st.lists(single_separator, min_size=1, max_size=3).map(tuple),
    st.sampled_from(BAD_SEPARATORS),
)


def read_strategy(read_sizes: st.SearchStrategy[int]) -> st.SearchStrategy[Read]:
    return st.one_of(
        st.builds(Read, st.just("read"), read_sizes),
        st.builds(Read, st.just("readline")),
        st.builds(Read, st.just("readexactly"), st.integers(-1, 40)),
        st.builds(Read, st.just("readuntil"), separator_strategy),
    )


any_read = read_strategy(
    st.one_of(st.just(-1), st.integers(-2, 12), st.integers(13, 100))
)
#: Reads allowed as a probe: no read(-1) (see full_read).
probe_read = read_strategy(st.one_of(st.integers(0, 12), st.integers(13, 100)))
maybe_probe = st.one_of(st.none(), probe_read)
limits = st.one_of(st.integers(1, 20), st.just(DEFAULT_LIMIT))


@st.composite
def full_read(draw: st.DrawFn) -> Read:
    read = draw(any_read)
    probe = None
    # A probe next to read(-1) is the documented difference: asyncio's
    # read(-1) empties the buffer while it waits, portastreams' does not.
    if not (read.method == "read" and isinstance(read.arg, int) and read.arg < 0):
        probe = draw(maybe_probe)
    return Read(read.method, read.arg, None, probe)


op_strategy: st.SearchStrategy[Op] = st.one_of(
    full_read(),
    full_read(),
    full_read(),
    full_read(),
    st.builds(Feed, st.integers(1, 3)),
    st.just(FeedEof()),
)


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    data = draw(data_strategy)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    chunks = tuple(data[a:b] for a, b in itertools.pairwise(bounds))
    limit = draw(limits)
    ops = draw(st.lists(op_strategy, min_size=1, max_size=10))
    transport = draw(st.booleans())
    # At most one set_exception per script (it is sticky: every later read
    # raises it), either between operations or while a read waits.
    where = draw(st.one_of(st.none(), st.integers(0, len(ops))))
    if where is not None:
        if where < len(ops) and isinstance(ops[where], Read) and draw(st.booleans()):
            read = ops[where]
            assert isinstance(read, Read)
            exc_after = draw(st.integers(0, 3))
            ops[where] = Read(read.method, read.arg, exc_after, read.probe)
        else:
            kind = draw(st.integers(0, len(EXCEPTION_FACTORIES) - 1))
            ops.insert(where, SetException(kind))
    return Script(limit, chunks, tuple(ops), transport)


@st.composite
def interrupted_scripts(draw: st.DrawFn) -> Script:
    """A few reads, the last one interrupted by ``set_exception`` while it waits."""
    script = draw(scripts())
    reads = draw(st.lists(full_read(), min_size=1, max_size=3))
    last = reads[-1]
    reads[-1] = Read(last.method, last.arg, draw(st.integers(0, 3)), last.probe)
    prefix = draw(st.lists(st.builds(Feed, st.integers(1, 2)), max_size=1))
    return Script(script.limit, script.chunks, (*prefix, *reads), script.transport)


# -- running a script ---------------------------------------------------------


@dataclass
class Outcome:
    """What one read returned or raised."""

    result: bytes | None = None
    error: BaseException | None = None

    def key(self) -> tuple[object, ...]:
        error = self.error
        if error is None:
            return ("returned", self.result)
        return (
            "raised",
            type(error).__name__,
            error.args,
            str(error),
            getattr(error, "partial", None),
            getattr(error, "expected", None),
            getattr(error, "consumed", None),
        )


@dataclass
class Step:
    """The observable state after one operation of a script."""

    op: Op
    outcome: Outcome | None
    probe: Outcome | None
    buffer: bytes
    at_eof: bool
    before: bytes  # the buffer before the operation
    fed: list[bytes] = field(default_factory=list)  # chunks fed during it
    interrupted: bool = False  # set_exception was called while it waited
    calls: list[str] = field(default_factory=list)  # transport calls during it
    paused: bool | None = False  # reading paused afterwards (None: not compared)


class Handle:
    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.started = False


def call(reader: Any, read: Read) -> Coroutine[Any, Any, bytes]:
    coro: Coroutine[Any, Any, bytes]
    if read.method == "read":
        coro = reader.read(read.arg)
    elif read.method == "readline":
        coro = reader.readline()
    elif read.method == "readexactly":
        coro = reader.readexactly(read.arg)
    else:
        coro = reader.readuntil(read.arg)
    return coro


class ReferenceHandle(Handle):
    def __init__(self, coro: Coroutine[Any, Any, bytes]) -> None:
        super().__init__()
        self.coro = coro
        self.future: asyncio.Future[None] | None = None

    def step(self) -> None:
        try:
            self.future = self.coro.send(None)
        except StopIteration as stop:
            self.outcome = Outcome(result=stop.value)
        except Exception as exc:
            self.outcome = Outcome(error=exc)


class ReferenceSide:
    """CPython's reader, its coroutines stepped by hand."""

    pauses_as_asyncio = True

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        self.reader: Any = ReferenceReader(limit, loop=loop)

    def buffered(self) -> bytes:
        return bytes(self.reader._buffer)

    def give(self, chunk: bytes) -> None:
        """A chunk arrives while a read waits."""
        self.reader.feed_data(chunk)

    def give_eof(self) -> None:
        """The end of the stream arrives while a read waits."""
        self.reader.feed_eof()

    def start(self, read: Read) -> Handle:
        handle = ReferenceHandle(call(self.reader, read))
        handle.step()
        return handle

    async def settle(self, handle: Handle, *, probe: bool = False) -> bool:
        assert isinstance(handle, ReferenceHandle)
        while handle.outcome is None:
            assert handle.future is not None
            if not handle.future.done():
                return False
            handle.step()
        return True


class PortastreamsSide:
    """portastreams' reader, each read in a task of the running backend."""

    #: Whether ``_paused`` is compared (a connection's reader pauses its own
    #: transport, with no reference to compare it with).
    pauses_as_asyncio = True

    def __init__(self, limit: int, task_group: anyio.abc.TaskGroup) -> None:
        self.reader = portastreams.StreamReader(limit)
        self.task_group = task_group

    def buffered(self) -> bytes:
        """What is buffered, head and bytearray (without moving the head,
        as ``_buffer`` would)."""
        reader = self.reader
        return reader._head[reader._head_start :] + bytes(reader._data)

    def give(self, chunk: bytes) -> None:
        self.reader.feed_data(chunk)

    def give_eof(self) -> None:
        self.reader.feed_eof()

    def waiting(self) -> bool:
        return self.reader._waiter is not None

    def start(self, read: Read) -> Handle:
        handle = Handle()
        self.task_group.start_soon(self._run, read, handle)
        return handle

    async def _run(self, read: Read, handle: Handle) -> None:
        handle.started = True
        try:
            result = await call(self.reader, read)
        except Exception as exc:
            handle.outcome = Outcome(error=exc)
        else:
            handle.outcome = Outcome(result=result)

    async def settle(self, handle: Handle, *, probe: bool = False) -> bool:
        """Run until the read has finished (True) or waits for data (False)."""
        for _ in range(1000):
            if handle.outcome is not None:
                return True
            if handle.started and not probe and self.waiting():
                return False
            await anyio.lowlevel.checkpoint()
        raise AssertionError("the read neither finished nor waited for data")


class ChunkSource(anyio.abc.ByteReceiveStream):
    """A byte stream whose every ``receive()`` returns one given chunk.

    ``waiting`` is True while a ``receive()`` has nothing to return (it is
    cleared when a chunk or the end is given, before the receiving task has
    run, so a driver never mistakes a woken read for a waiting one).
    """

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.ended = False
        self.waiting = False
        self.arrived = anyio.Event()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self.chunks and not self.ended:
            self.waiting = True
            self.arrived = anyio.Event()
            try:
                await self.arrived.wait()
            finally:
                self.waiting = False
        if not self.chunks:
            raise anyio.EndOfStream
        chunk = self.chunks.popleft()
        assert len(chunk) <= max_bytes
        return chunk

    def give(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.waiting = False
        self.arrived.set()

    def give_eof(self) -> None:
        self.ended = True
        self.waiting = False
        self.arrived.set()

    async def aclose(self) -> None:
        self.give_eof()


class SourceSide(PortastreamsSide):
    """portastreams' reader in source mode: it receives while a read waits."""

    def __init__(self, limit: int, task_group: anyio.abc.TaskGroup) -> None:
        super().__init__(limit, task_group)
        self.source = ChunkSource()
        self.reader = portastreams.StreamReader.from_stream(self.source, limit=limit)

    def give(self, chunk: bytes) -> None:
        self.source.give(chunk)

    def give_eof(self) -> None:
        self.source.give_eof()

    def waiting(self) -> bool:
        # Not once set_exception() has cancelled the receive (the reading
        # task has yet to run).
        waiter = self.reader._waiter
        scope = getattr(waiter, "scope", None)
        return self.source.waiting and not (scope is not None and scope.cancel_called)


class PulledSide(PortastreamsSide):
    """portastreams' reader on a trio socket: its reads receive themselves."""

    pauses_as_asyncio = False

    def __init__(self, limit: int, task_group: anyio.abc.TaskGroup) -> None:
        super().__init__(limit, task_group)
        self.limit = limit

    async def __aenter__(self) -> PulledSide:
        ours, self.peer = socket.socketpair()
        self.ours = ours
        stream = await anyio.abc.SocketStream.from_socket(ours)
        self.reader, self.writer = portastreams.wrap_stream(stream, limit=self.limit)
        assert self.reader._puller is not None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.writer.close()
        await self.writer.wait_closed()
        self.peer.close()

    def give(self, chunk: bytes) -> None:
        self.peer.sendall(chunk)

    def give_eof(self) -> None:
        self.peer.shutdown(socket.SHUT_WR)

    def waiting(self) -> bool:
        """A read waits, nobody has woken it, and the socket has nothing it
        has not taken."""
        if self.reader._waiter is None or self.writer.transport._pull_interrupted:
            return False
        try:
            self.ours.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        return False


Side = ReferenceSide | PortastreamsSide

FINAL_READ = Read("read", -1)


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


async def run_script(side: Side, script: Script) -> list[Step]:
    reader = side.reader
    transport = FakeTransport()
    if script.transport:
        reader.set_transport(transport)
    chunks = deque(script.chunks)
    eof = False
    steps: list[Step] = []
    for op in (*script.ops, FINAL_READ):
        step = Step(op, None, None, b"", False, before=side.buffered())
        transport.calls.clear()
        if isinstance(op, Feed):
            for _ in range(op.count):
                if chunks and not eof:
                    chunk = chunks.popleft()
                    step.fed.append(chunk)
                    reader.feed_data(chunk)
        elif isinstance(op, FeedEof):
            if not eof:
                eof = True
                reader.feed_eof()
        elif isinstance(op, SetException):
            reader.set_exception(EXCEPTION_FACTORIES[op.kind]())
        else:
            handle = side.start(op)
            while not await side.settle(handle):
                if op.probe is not None and step.probe is None:
                    probe = side.start(op.probe)
                    assert await side.settle(probe, probe=True)
                    step.probe = probe.outcome
                elif op.exc_after == len(step.fed) and not step.interrupted:
                    step.interrupted = True
                    reader.set_exception(EXCEPTION_FACTORIES[0]())
                elif chunks and not eof:
                    chunk = chunks.popleft()
                    step.fed.append(chunk)
                    side.give(chunk)
                elif not eof:
                    eof = True
                    step.fed.append(b"<EOF>")
                    side.give_eof()
                else:
                    raise AssertionError("a read waits for data after EOF")
            step.outcome = handle.outcome
        step.buffer = side.buffered()
        step.at_eof = reader.at_eof()
        step.calls = transport.calls.copy()
        step.paused = reader._paused if side.pauses_as_asyncio else None
        steps.append(step)
    return steps


def is_read_all(op: Op) -> bool:
    return (
        isinstance(op, Read)
        and op.method == "read"
        and isinstance(op.arg, int)
        and op.arg < 0
    )


def assert_same_steps(actual: list[Step], expected: list[Step]) -> None:
    assert len(actual) == len(expected)
    # After a read(-1) is interrupted by set_exception, asyncio has consumed
    # (and lost) what it had read so far while portastreams keeps it
    # buffered. Every later read raises the stored exception on both sides,
    # so only the buffers differ: asyncio's is then a suffix of ours.
    diverged = False
    for index, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        where = f"step {index}: {ours.op}"
        assert ours.op == theirs.op
        assert ours.fed == theirs.fed, where
        for mine, reference in (
            (ours.outcome, theirs.outcome),
            (ours.probe, theirs.probe),
        ):
            if reference is None:
                assert mine is None, where
                continue
            assert mine is not None, where
            assert mine.key() == reference.key(), where
            if reference.error is not None:
                assert isinstance(mine.error, type(reference.error)), where
        if is_read_all(ours.op) and ours.interrupted:
            # portastreams' read(-1) consumed nothing.
            fed = b"".join(chunk for chunk in ours.fed if chunk != b"<EOF>")
            assert ours.buffer == ours.before + fed, where
            diverged = True
        if diverged:
            assert ours.buffer.endswith(theirs.buffer), where
        else:
            assert ours.buffer == theirs.buffer, where
            assert ours.at_eof == theirs.at_eof, where
            if ours.paused is not None:
                assert ours.paused == theirs.paused, where
            # read(-1) differs in how: asyncio reads in limit-sized blocks,
            # resuming as it goes; portastreams resumes before each wait.
            if not is_read_all(ours.op):
                assert ours.calls == theirs.calls, where


@pytest.fixture(scope="module")
def reference_loop() -> Generator[asyncio.AbstractEventLoop, None, None]:
    """A loop for the reference reader's futures; it never runs."""
    loop = asyncio.SelectorEventLoop()
    yield loop
    loop.close()


def for_source_mode(script: Script) -> Script:
    """``script`` for a reader in source mode: no transport to pause."""
    return Script(script.limit, script.chunks, script.ops)


MODES = pytest.mark.parametrize("mode", ["fed", "source"])


async def run_both(
    script: Script,
    loop: asyncio.AbstractEventLoop,
    mode: str = "fed",
    *,
    events: bool = True,
) -> None:
    side_type = PortastreamsSide
    if mode == "source":
        script = for_source_mode(script)
        side_type = SourceSide
    elif mode == "pulled":
        script = Script(script.limit, script.chunks, script.ops)  # its own transport
        side_type = PulledSide
    expected = await run_script(ReferenceSide(script.limit, loop), script)
    async with anyio.create_task_group() as task_group:
        side = side_type(script.limit, task_group)
        if isinstance(side, PulledSide):
            async with side:
                actual = await run_script(side, script)
        else:
            actual = await run_script(side, script)
    assert_same_steps(actual, expected)
    if not events:  # (outside Hypothesis)
        return
    for step in expected:
        for outcome in (step.outcome, step.probe):
            if outcome is not None and outcome.error is not None:
                event(f"raised {type(outcome.error).__name__}")
        if step.interrupted:
            event("set_exception() while a read waited")
            if is_read_all(step.op):
                event("set_exception() while read(-1) waited")
        if step.calls:
            event("the transport was paused or resumed")


@MODES
@given(script=scripts())
async def test_matches_asyncio(
    mode: str, script: Script, reference_loop: asyncio.AbstractEventLoop
) -> None:
    await run_both(script, reference_loop, mode)


@MODES
@given(script=interrupted_scripts())
async def test_set_exception_while_waiting_matches_asyncio(
    mode: str, script: Script, reference_loop: asyncio.AbstractEventLoop
) -> None:
    """In source mode, the read waits inside its stream's ``receive()``."""
    await run_both(script, reference_loop, mode)


@st.composite
def one_method_scripts(draw: st.DrawFn) -> Script:
    """The same read in a loop until EOF: long runs of one method, any chunking."""
    data = draw(data_strategy)
    cuts = draw(st.lists(st.integers(0, 200), max_size=20))
    limit = draw(limits)
    method: Method = draw(
        st.sampled_from(["readline", "readuntil", "readexactly", "read"])
    )
    arg: int | Separator = draw(st.one_of(separator_strategy, st.integers(-1, 30)))
    transport = draw(st.booleans())
    read_arg: int | Separator | None = arg
    if method in ("readexactly", "read"):
        if not isinstance(arg, int):
            read_arg = 3
    elif method == "readuntil":
        if isinstance(arg, int):
            read_arg = b"\n"
    else:
        read_arg = None
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut <= len(data))})
    chunks = tuple(data[a:b] for a, b in itertools.pairwise(bounds))
    reads = (Read(method, read_arg),) * min(len(data) + 2, 60)
    return Script(limit, chunks, reads, transport)


@MODES
@given(script=one_method_scripts())
async def test_one_method_repeatedly_matches_asyncio(
    mode: str, script: Script, reference_loop: asyncio.AbstractEventLoop
) -> None:
    await run_both(script, reference_loop, mode)


#: A connection's reader on trio pulls (trio only, by nature).
ON_TRIO = pytest.mark.parametrize("anyio_backend", ["trio"])


@ON_TRIO
@given(script=st.one_of(scripts(), interrupted_scripts()))
async def test_pulled_reads_match_asyncio(
    anyio_backend: object, script: Script, reference_loop: asyncio.AbstractEventLoop
) -> None:
    """Any script; half of them end with ``set_exception()`` while a read
    waits (on the socket, or between two asks)."""
    await run_both(script, reference_loop, "pulled")


@ON_TRIO
@given(script=one_method_scripts())
async def test_one_pulled_method_repeatedly_matches_asyncio(
    anyio_backend: object, script: Script, reference_loop: asyncio.AbstractEventLoop
) -> None:
    await run_both(script, reference_loop, "pulled")


@pytest.mark.parametrize("limit", [1, 2, 5])
@pytest.mark.parametrize("separator", [b"\n", b"ab", (b"\n", b"ab")])
@pytest.mark.parametrize("chunk_size", [3, 1000])
async def test_items_at_the_limit_from_received_chunks_match_asyncio(
    limit: int,
    separator: Separator,
    chunk_size: int,
    reference_loop: asyncio.AbstractEventLoop,
) -> None:
    """Items of every length from 0 to ``limit + 2`` bytes before their
    separator, in chunks a source-mode reader receives and reads from (its
    head): the ones over the limit must fail as asyncio's do, at the same
    point and with the same buffer left, and the reads after them go on
    alike."""
    single = separator if isinstance(separator, bytes) else separator[0]
    data = b"".join(b"x" * length + single for length in range(limit + 3)) * 2
    method: Method = "readline" if separator == b"\n" else "readuntil"
    arg = None if method == "readline" else separator
    reads = (Read(method, arg),) * (2 * limit + 8)
    chunks = tuple(data[i : i + chunk_size] for i in range(0, len(data), chunk_size))
    script = Script(limit, chunks, reads)
    await run_both(script, reference_loop, "source", events=False)


@pytest.mark.parametrize(
    ("method", "arg"),
    [("readline", None), ("readuntil", b"\n"), ("readexactly", 2), ("read", 2)],
)
async def test_set_exception_after_a_read_from_a_received_chunk_matches_asyncio(
    anyio_backend_name: str,
    method: Method,
    arg: int | bytes | None,
    reference_loop: asyncio.AbstractEventLoop,
) -> None:
    """A read answered from a received chunk leaves the rest in the head;
    after ``set_exception()`` the next read raises, as asyncio's does,
    whatever the head could have answered."""
    script = Script(
        DEFAULT_LIMIT,
        (b"ab\ncd\nef\n",),
        (Read("readline"), SetException(0), Read(method, arg)),
    )
    await run_both(script, reference_loop, "source", events=False)
    if anyio_backend_name == "trio":
        await run_both(script, reference_loop, "pulled", events=False)


@pytest.mark.parametrize("method", ["readline", "readuntil", "readexactly", "read"])
async def test_a_read_that_leaves_exactly_the_limit_resumes_as_asyncio(
    method: Method, reference_loop: asyncio.AbstractEventLoop
) -> None:
    """A paused reader whose read leaves exactly ``limit`` bytes buffered
    resumes its transport, as asyncio's (``<= limit``); each read's own path,
    the per-line fast path of ``readline()`` included."""
    arg = {"readline": None, "readuntil": b"\n", "readexactly": 5, "read": 5}[method]
    script = Script(
        4, (b"abcd\nwxyz",), (Feed(1), Read(method, arg), Read(method, arg)), True
    )
    await run_both(script, reference_loop, events=False)


@pytest.mark.parametrize("method", ["readline", "readuntil"])
@pytest.mark.parametrize("taken", [1, 2])
@pytest.mark.parametrize(
    "rest", [b"\n", b"\x00\n\n", b"\n\x00\n", b"\x00\x00"], ids=repr
)
async def test_a_search_resumed_after_a_concurrent_read_matches_asyncio(
    anyio_backend_name: str,
    method: Method,
    taken: int,
    rest: bytes,
    reference_loop: asyncio.AbstractEventLoop,
) -> None:
    """A line search waits with bytes from a received chunk unread; a
    concurrent ``read()`` takes some of them. CPython's search resumes at the
    offset it had reached, counted from the (now later) first unread byte:
    it may miss a separator, return two lines at once, or wait for more.
    Reads that receive themselves must do the same, as fed ones do."""
    arg = None if method == "readline" else b"\n"
    script = Script(
        DEFAULT_LIMIT,
        (b"\n\x00\x00", rest),
        (Read("readline"), Read(method, arg, probe=Read("read", taken))),
    )
    await run_both(script, reference_loop, "source", events=False)
    if anyio_backend_name == "trio":
        await run_both(script, reference_loop, "pulled", events=False)


# -- the driver itself must be able to fail -------------------------------------


def test_comparison_detects_a_difference() -> None:
    """A wrong result, a wrong buffer or a wrong exception attribute is caught."""
    op = Read("readline")
    good = Step(op, Outcome(result=b"a\n"), None, b"b", False, before=b"")
    assert_same_steps([good], [good])
    wrong_result = Step(op, Outcome(result=b"a"), None, b"b", False, before=b"")
    wrong_buffer = Step(op, Outcome(result=b"a\n"), None, b"", False, before=b"")
    with pytest.raises(AssertionError):
        assert_same_steps([wrong_result], [good])
    with pytest.raises(AssertionError):
        assert_same_steps([wrong_buffer], [good])
    overrun = Step(
        op,
        Outcome(error=asyncio.LimitOverrunError("m", 3)),
        None,
        b"",
        False,
        before=b"",
    )
    other_consumed = Step(
        op,
        Outcome(error=portastreams.LimitOverrunError("m", 4)),
        None,
        b"",
        False,
        before=b"",
    )
    with pytest.raises(AssertionError):
        assert_same_steps([other_consumed], [overrun])
