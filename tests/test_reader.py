"""Example tests for ``StreamReader`` in feed mode, on every backend.

Expected messages are CPython 3.13's (``Lib/asyncio/streams.py``); where a
state can be built on CPython's reader too, the test compares with it
directly.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import portastreams
from portastreams import IncompleteReadError, LimitOverrunError, StreamReader

pytestmark = pytest.mark.anyio

WAITING = "called while another coroutine is already waiting for incoming data"


class Pending:
    """A read running in a task: its result or exception once it is done."""

    def __init__(self) -> None:
        self.done = False
        self.result: bytes | None = None
        self.error: BaseException | None = None

    async def run(self, read: Callable[[], Awaitable[bytes]]) -> None:
        try:
            self.result = await read()
        except Exception as exc:
            self.error = exc
        finally:
            self.done = True


async def start(
    task_group: anyio.abc.TaskGroup, read: Callable[[], Awaitable[bytes]]
) -> Pending:
    """Start ``read`` in a task and return once every task is blocked."""
    pending = Pending()
    task_group.start_soon(pending.run, read)
    await anyio.wait_all_tasks_blocked()
    return pending


class FakeTransport:
    """Records the flow-control calls a reader makes."""

    def __init__(self, *, can_pause: bool = True) -> None:
        self.calls: list[str] = []
        self.can_pause = can_pause

    def pause_reading(self) -> None:
        if not self.can_pause:
            raise NotImplementedError
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def __repr__(self) -> str:
        return "<FakeTransport>"


@pytest.fixture
def cpython_loop() -> Generator[asyncio.AbstractEventLoop, None, None]:
    """A never-running loop for building CPython readers to compare with."""
    loop = asyncio.SelectorEventLoop()
    yield loop
    loop.close()


def fed(data: bytes = b"", *, eof: bool = False, limit: int = 2**16) -> StreamReader:
    reader = StreamReader(limit=limit)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


# -- construction ---------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, -(2**16)])
async def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match=r"^Limit cannot be <= 0$"):
        StreamReader(limit=limit)


async def test_loop_argument_is_accepted_and_ignored() -> None:
    reader = StreamReader(limit=5, loop=object())
    reader.feed_data(b"abc\n")
    assert await reader.readline() == b"abc\n"


async def test_a_reader_is_an_anyio_byte_receive_stream() -> None:
    reader = StreamReader()
    assert isinstance(reader, anyio.abc.ByteReceiveStream)
    assert reader.extra_attributes == {}


# -- feed_data / feed_eof / at_eof ---------------------------------------------------


async def test_feed_data_accepts_bytes_like_objects() -> None:
    reader = StreamReader()
    reader.feed_data(b"ab")
    reader.feed_data(bytearray(b"cd"))
    reader.feed_data(memoryview(b"xefx")[1:3])
    reader.feed_eof()
    assert await reader.read() == b"abcdef"


async def test_at_eof_only_once_eof_is_fed_and_the_buffer_is_empty() -> None:
    reader = StreamReader()
    assert not reader.at_eof()
    reader.feed_data(b"ab")
    assert not reader.at_eof()
    reader.feed_eof()
    assert not reader.at_eof()
    assert await reader.read(1) == b"a"
    assert not reader.at_eof()
    assert await reader.read(1) == b"b"
    assert reader.at_eof()
    assert await reader.read(1) == b""
    assert reader.at_eof()


async def test_feed_eof_without_data() -> None:
    reader = StreamReader()
    reader.feed_eof()
    assert reader.at_eof()
    assert await reader.read() == b""
    assert await reader.readline() == b""


async def test_feed_data_after_feed_eof_raises_and_keeps_the_buffer() -> None:
    reader = fed(b"abc", eof=True)
    with pytest.raises(RuntimeError, match=r"feed_data\(\) called after feed_eof\(\)"):
        reader.feed_data(b"more")
    with pytest.raises(RuntimeError):
        reader.feed_data(b"")
    assert await reader.read() == b"abc"


async def test_feed_data_wakes_a_waiting_read() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.read(10))
        assert not pending.done
        reader.feed_data(b"hello")
    assert pending.result == b"hello"


async def test_feeding_nothing_does_not_wake_a_waiting_read() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.read(10))
        reader.feed_data(b"")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        assert reader._waiter is not None
        reader.feed_data(b"x")
    assert pending.result == b"x"


async def test_feed_eof_wakes_a_waiting_read() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, reader.readline)
        reader.feed_data(b"no newline")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        reader.feed_eof()
    assert pending.result == b"no newline"
    assert reader.at_eof()


# -- set_exception / exception -------------------------------------------------------


async def test_exception_is_none_by_default() -> None:
    assert StreamReader().exception() is None


async def test_set_exception_fails_every_later_read() -> None:
    reader = fed(b"line\nmore")
    error = ConnectionResetError("gone")
    reader.set_exception(error)
    assert reader.exception() is error
    reads: list[Callable[[], Awaitable[bytes]]] = [
        reader.read,
        lambda: reader.read(0),
        lambda: reader.read(3),
        reader.readline,
        lambda: reader.readexactly(1),
        lambda: reader.readexactly(0),
        reader.readuntil,
        lambda: reader.readuntil((b"x", b"e")),
    ]
    for read in reads:
        with pytest.raises(ConnectionResetError) as caught:
            await read()
        assert caught.value is error
    # The buffered data is not consumed (CPython keeps it too).
    assert bytes(reader._buffer) == b"line\nmore"


@pytest.mark.parametrize(
    "method", ["read", "read_all", "readline", "readexactly", "readuntil"]
)
async def test_set_exception_wakes_a_waiting_read_with_the_exception(
    method: str,
) -> None:
    reader = fed(b"partial") if method != "read" else StreamReader()
    read: Callable[[], Awaitable[bytes]] = {
        "read": lambda: reader.read(100),
        "read_all": reader.read,
        "readline": reader.readline,
        "readexactly": lambda: reader.readexactly(100),
        "readuntil": lambda: reader.readuntil(b"!"),
    }[method]
    error = OSError("boom")
    async with anyio.create_task_group() as tg:
        pending = await start(tg, read)
        assert not pending.done
        reader.set_exception(error)
    assert pending.error is error
    assert reader._waiter is None


async def test_argument_errors_come_before_the_stored_exception() -> None:
    reader = StreamReader()
    reader.set_exception(ConnectionResetError())
    with pytest.raises(ValueError, match="readexactly size can not be less than zero"):
        await reader.readexactly(-1)
    with pytest.raises(
        ValueError, match="Separator should be at least one-byte string"
    ):
        await reader.readuntil(b"")


async def test_readline_turns_a_stored_incomplete_read_error_into_its_result() -> None:
    """As CPython's readline, which catches the errors readuntil raises."""
    reader = fed(b"buffered")
    reader.set_exception(asyncio.IncompleteReadError(b"partial", 10))
    assert await reader.readline() == b"partial"
    reader = fed(b"xx\nyy")
    reader.set_exception(asyncio.LimitOverrunError("overrun", 2))
    with pytest.raises(ValueError, match=r"^overrun$"):
        await reader.readline()
    assert bytes(reader._buffer) == b"yy"


# -- set_transport: flow control --------------------------------------------------------


async def test_paused_above_twice_the_limit_and_resumed_at_the_limit() -> None:
    transport = FakeTransport()
    reader = StreamReader(limit=10)
    reader.set_transport(transport)
    reader.feed_data(b"x" * 20)
    assert transport.calls == []  # not above 2 * limit yet
    reader.feed_data(b"x")
    assert transport.calls == ["pause"]
    reader.feed_data(b"x" * 10)
    assert transport.calls == ["pause"]  # paused once
    assert await reader.read(20) == b"x" * 20
    assert transport.calls == ["pause"]  # 11 bytes left: above the limit
    assert await reader.read(1) == b"x"
    assert transport.calls == ["pause", "resume"]  # 10 bytes: at the limit
    assert "paused" not in repr(reader)


@pytest.mark.parametrize("method", ["readline", "readuntil", "readexactly", "read_all"])
async def test_every_read_resumes_the_transport(method: str) -> None:
    transport = FakeTransport()
    reader = StreamReader(limit=4)
    reader.set_transport(transport)
    reader.feed_data(b"abcdefgh\n")
    assert transport.calls == ["pause"]
    if method == "read_all":
        reader.feed_eof()
        assert await reader.read() == b"abcdefgh\n"
    elif method == "readexactly":
        assert await reader.readexactly(5) == b"abcde"
    else:
        with pytest.raises(ValueError if method == "readline" else LimitOverrunError):
            await getattr(reader, method)()
        if method == "readuntil":
            assert transport.calls == ["pause"]  # the data is still buffered
            assert await reader.readexactly(9) == b"abcdefgh\n"
    assert transport.calls == ["pause", "resume"]


async def test_waiting_while_paused_resumes_reading_first() -> None:
    """readexactly(n) with n > 2 * limit would deadlock otherwise."""
    transport = FakeTransport()
    reader = StreamReader(limit=2)
    reader.set_transport(transport)
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.readexactly(10))
        reader.feed_data(b"12345")
        await anyio.wait_all_tasks_blocked()
        assert transport.calls == ["pause", "resume"]
        reader.feed_data(b"67890")
    assert pending.result == b"1234567890"
    # Paused again by the second chunk, resumed once the read took it all.
    assert transport.calls == ["pause", "resume", "pause", "resume"]
    assert "paused" not in repr(reader)


async def test_a_readexactly_that_waited_resumes_at_exactly_the_limit() -> None:
    """As CPython: reading resumes once a read leaves no more than ``limit``
    bytes buffered -- here exactly ``limit``, after the read waited."""
    transport = FakeTransport()
    reader = StreamReader(limit=4)
    reader.set_transport(transport)
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.readexactly(13))
        reader.feed_data(b"x" * 17)  # above 2 * limit: paused
        assert transport.calls == ["pause"]
    assert pending.result == b"x" * 13
    assert transport.calls == ["pause", "resume"]  # 4 bytes left: the limit


async def test_incomplete_read_leaves_the_transport_paused() -> None:
    """As CPython: readexactly's IncompleteReadError does not resume reading."""
    transport = FakeTransport()
    reader = fed(b"abcd", limit=1)
    reader.set_transport(transport)
    reader.feed_data(b"efgh")
    reader.feed_eof()
    with pytest.raises(IncompleteReadError):
        await reader.readexactly(100)
    assert transport.calls == ["pause"]
    assert repr(reader) == "<StreamReader eof limit=1 transport=<FakeTransport> paused>"


async def test_a_transport_that_cannot_pause_is_dropped() -> None:
    transport = FakeTransport(can_pause=False)
    reader = StreamReader(limit=1)
    reader.set_transport(transport)
    reader.feed_data(b"abc")  # pause_reading raises NotImplementedError
    reader.feed_data(b"def")
    assert await reader.read(6) == b"abcdef"
    assert transport.calls == []
    assert "transport" not in repr(reader)


async def test_set_transport_twice_raises() -> None:
    reader = StreamReader()
    reader.set_transport(FakeTransport())
    with pytest.raises(RuntimeError, match="Transport already set"):
        reader.set_transport(FakeTransport())


# -- read ------------------------------------------------------------------------------


async def test_read_returns_at_most_n_buffered_bytes_without_waiting() -> None:
    reader = fed(b"abcdef")
    assert await reader.read(4) == b"abcd"
    assert await reader.read(100) == b"ef"
    assert bytes(reader._buffer) == b""


async def test_read_zero_returns_nothing_even_with_an_empty_buffer() -> None:
    reader = StreamReader()
    assert await reader.read(0) == b""
    reader.feed_data(b"ab")
    assert await reader.read(0) == b""
    assert bytes(reader._buffer) == b"ab"


@pytest.mark.parametrize("n", [-1, -2, -100])
async def test_read_negative_reads_until_eof(n: int) -> None:
    reader = fed(b"ab", limit=1)
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.read(n))
        reader.feed_data(b"cd")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        reader.feed_data(b"ef")
        reader.feed_eof()
    assert pending.result == b"abcdef"
    assert reader.at_eof()


async def test_read_all_waits_for_eof_without_consuming() -> None:
    """portastreams' read(-1) consumes only at EOF (cancellation safety)."""
    reader = fed(b"ab")
    async with anyio.create_task_group() as tg:
        pending = await start(tg, reader.read)
        reader.feed_data(b"cd")
        await anyio.wait_all_tasks_blocked()
        assert bytes(reader._buffer) == b"abcd"
        reader.feed_eof()
    assert pending.result == b"abcd"


async def test_read_at_eof_returns_the_rest_then_nothing() -> None:
    reader = fed(b"abc", eof=True)
    assert await reader.read(2) == b"ab"
    assert await reader.read(2) == b"c"
    assert await reader.read(2) == b""
    assert await reader.read() == b""


# -- readline ------------------------------------------------------------------------


async def test_readline_returns_lines_then_the_partial_line_then_nothing() -> None:
    reader = fed(b"one\ntwo\r\nthree", eof=True)
    assert await reader.readline() == b"one\n"
    assert await reader.readline() == b"two\r\n"
    assert await reader.readline() == b"three"
    assert await reader.readline() == b""
    assert reader.at_eof()


async def test_readline_waits_across_chunks() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, reader.readline)
        for chunk in (b"a", b"b", b"c"):
            reader.feed_data(chunk)
            await anyio.wait_all_tasks_blocked()
            assert not pending.done
        reader.feed_data(b"\nd")
    assert pending.result == b"abc\n"
    assert bytes(reader._buffer) == b"d"


async def test_readline_limit_counts_the_line_without_its_newline() -> None:
    reader = fed(b"abcde\nabcdef\nz\n", limit=5)
    assert await reader.readline() == b"abcde\n"
    with pytest.raises(
        ValueError, match=r"^Separator is found, but chunk is longer than limit$"
    ):
        await reader.readline()
    # The too-long line, newline included, is dropped.
    assert bytes(reader._buffer) == b"z\n"
    assert await reader.readline() == b"z\n"


async def test_readline_without_newline_beyond_the_limit_clears_the_buffer() -> None:
    reader = StreamReader(limit=3)
    async with anyio.create_task_group() as tg:
        pending = await start(tg, reader.readline)
        reader.feed_data(b"ab")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        reader.feed_data(b"cdef")
    assert isinstance(pending.error, ValueError)
    assert str(pending.error) == "Separator is not found, and chunk exceed the limit"
    assert bytes(reader._buffer) == b""


async def test_readline_at_eof_with_newline_beyond_the_limit() -> None:
    reader = fed(b"toolong\nok\n", eof=True, limit=2)
    with pytest.raises(ValueError, match="chunk is longer than limit"):
        await reader.readline()
    assert await reader.readline() == b"ok\n"


# -- readexactly ------------------------------------------------------------------------


async def test_readexactly_waits_for_n_bytes() -> None:
    reader = fed(b"ab")
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.readexactly(5))
        reader.feed_data(b"cd")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        assert bytes(reader._buffer) == b"abcd"
        reader.feed_data(b"efg")
    assert pending.result == b"abcde"
    assert bytes(reader._buffer) == b"fg"


async def test_readexactly_zero_and_negative() -> None:
    reader = StreamReader()
    assert await reader.readexactly(0) == b""
    with pytest.raises(
        ValueError, match=r"^readexactly size can not be less than zero$"
    ):
        await reader.readexactly(-1)


async def test_readexactly_at_eof_raises_incomplete_read_error_with_the_rest() -> None:
    reader = fed(b"abc", eof=True)
    with pytest.raises(IncompleteReadError) as caught:
        await reader.readexactly(5)
    assert caught.value.partial == b"abc"
    assert caught.value.expected == 5
    assert str(caught.value) == "3 bytes read on a total of 5 expected bytes"
    assert reader.at_eof()


async def test_readexactly_more_than_the_limit() -> None:
    reader = fed(b"x" * 100, eof=True, limit=1)
    assert await reader.readexactly(100) == b"x" * 100


# -- readuntil ----------------------------------------------------------------------------


async def test_readuntil_default_separator_is_newline() -> None:
    reader = fed(b"ab\ncd")
    assert await reader.readuntil() == b"ab\n"


async def test_readuntil_multibyte_separator_split_across_chunks() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.readuntil(b"\r\n"))
        reader.feed_data(b"line\r")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        reader.feed_data(b"\nnext")
    assert pending.result == b"line\r\n"
    assert bytes(reader._buffer) == b"next"


@pytest.mark.parametrize(
    ("separator", "expected"),
    [
        ((b"\r\n", b"\n"), b"ab\n"),
        ((b"c", b"\n"), b"ab\n"),
        ((b"b\n", b"\n", b"ab\n"), b"ab\n"),
        ((b"zz", b"b"), b"ab"),
        ((b"b",), b"ab"),
        ((bytearray(b"b"), memoryview(b"\n")), b"ab"),
    ],
)
async def test_readuntil_tuple_returns_the_shortest_result(
    separator: tuple[bytes, ...], expected: bytes
) -> None:
    reader = fed(b"ab\ncd")
    assert await reader.readuntil(separator) == expected


async def test_readuntil_accepts_bytearray_and_memoryview() -> None:
    reader = fed(b"a-b=c")
    dash: Any = bytearray(b"-")  # accepted, as by CPython, though typed bytes
    equals: Any = memoryview(b"=")
    assert await reader.readuntil(dash) == b"a-"
    assert await reader.readuntil(equals) == b"b="


@pytest.mark.parametrize(
    ("separator", "message"),
    [
        (b"", "Separator should be at least one-byte string"),
        ((), "Separator should contain at least one element"),
        ((b"",), "Separator should be at least one-byte string"),
        ((b"\n", b""), "Separator should be at least one-byte string"),
    ],
)
async def test_readuntil_bad_separator_values(
    separator: bytes | tuple[bytes, ...], message: str
) -> None:
    reader = fed(b"abc\n")
    with pytest.raises(ValueError, match=f"^{message}$"):
        await reader.readuntil(separator)
    assert bytes(reader._buffer) == b"abc\n"


@pytest.mark.parametrize("separator", ["\n", 10, None, [b"\n"], (b"\n", "x"), ("\n",)])
async def test_readuntil_non_bytes_separator_is_a_type_error(separator: Any) -> None:
    reader = fed(b"abc\n")
    with pytest.raises(TypeError):
        await reader.readuntil(separator)
    assert bytes(reader._buffer) == b"abc\n"


async def test_readuntil_at_eof_raises_incomplete_read_error_with_everything() -> None:
    reader = fed(b"abc", eof=True)
    with pytest.raises(IncompleteReadError) as caught:
        await reader.readuntil(b"!")
    assert caught.value.partial == b"abc"
    assert caught.value.expected is None
    assert str(caught.value) == "3 bytes read on a total of undefined expected bytes"
    assert reader.at_eof()


async def test_readuntil_separator_found_beyond_the_limit() -> None:
    reader = fed(b"abcdef!", limit=3)
    with pytest.raises(LimitOverrunError) as caught:
        await reader.readuntil(b"!")
    assert caught.value.consumed == 6
    assert caught.value.args == ("Separator is found, but chunk is longer than limit",)
    assert bytes(reader._buffer) == b"abcdef!"  # left for the caller
    assert await reader.readexactly(7) == b"abcdef!"


async def test_readuntil_separator_not_found_within_the_limit() -> None:
    reader = StreamReader(limit=3)
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.readuntil(b"!!"))
        reader.feed_data(b"ab")
        await anyio.wait_all_tasks_blocked()
        assert not pending.done
        reader.feed_data(b"cdef")
    error = pending.error
    assert isinstance(error, LimitOverrunError)
    assert error.args == ("Separator is not found, and chunk exceed the limit",)
    # consumed = buffered bytes that cannot start the separator: 6 + 1 - 2.
    assert error.consumed == 5
    assert bytes(reader._buffer) == b"abcdef"


async def test_readuntil_overrun_reports_the_shortest_separator() -> None:
    """CPython 3.13: for LimitOverrunError the shortest separator is the match."""
    reader = fed(b"xxab", limit=2)
    with pytest.raises(LimitOverrunError) as caught:
        await reader.readuntil((b"ab", b"b"))
    assert caught.value.consumed == 3  # where b"b" starts, not b"ab"
    assert await reader.readuntil(b"xx") == b"xx"
    assert await reader.readuntil((b"ab", b"b")) == b"ab"


# -- async for -----------------------------------------------------------------------------


async def test_async_for_yields_lines_until_eof() -> None:
    reader = StreamReader()
    lines: list[bytes] = []

    async def collect() -> None:
        async for line in reader:
            lines.append(line)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await anyio.wait_all_tasks_blocked()
        reader.feed_data(b"a\nb")
        await anyio.wait_all_tasks_blocked()
        assert lines == [b"a\n"]
        reader.feed_data(b"\nc")
        reader.feed_eof()
    assert lines == [b"a\n", b"b\n", b"c"]
    assert reader.__aiter__() is reader


async def test_async_for_raises_the_stored_exception() -> None:
    reader = fed(b"a\n")
    reader.set_exception(BrokenPipeError())
    with pytest.raises(BrokenPipeError):
        async for _ in reader:
            pass


# -- concurrent waiters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "name"),
    [
        ("read", "read"),
        ("read_all", "read"),
        ("readline", "readuntil"),  # CPython's readline waits in readuntil()
        ("readexactly", "readexactly"),
        ("readuntil", "readuntil"),
        ("receive", "read"),
    ],
)
async def test_a_second_waiter_gets_runtime_error(second: str, name: str) -> None:
    reader = StreamReader()
    reads: dict[str, Callable[[], Awaitable[bytes]]] = {
        "read": lambda: reader.read(10),
        "read_all": reader.read,
        "readline": reader.readline,
        "readexactly": lambda: reader.readexactly(10),
        "readuntil": lambda: reader.readuntil(b"!"),
        "receive": reader.receive,
    }
    async with anyio.create_task_group() as tg:
        first = await start(tg, lambda: reader.readexactly(3))
        with pytest.raises(RuntimeError) as caught:
            await reads[second]()
        assert str(caught.value) == f"{name}() {WAITING}"
        # The first read is unaffected.
        reader.feed_data(b"abc")
    assert first.result == b"abc"


async def test_a_second_read_answered_from_the_buffer_does_not_wait() -> None:
    reader = fed(b"ab")
    async with anyio.create_task_group() as tg:
        first = await start(tg, lambda: reader.readexactly(5))
        assert await reader.read(1) == b"a"
        reader.feed_data(b"cdef")
    assert first.result == b"bcdef"


# -- exceptions ------------------------------------------------------------------------------


async def test_exceptions_are_caught_as_asyncio_exceptions() -> None:
    reader = fed(b"abc", eof=True)
    with pytest.raises(asyncio.IncompleteReadError) as incomplete:
        await reader.readexactly(4)
    assert incomplete.value.partial == b"abc"
    reader = fed(b"abcdef", limit=2)
    with pytest.raises(asyncio.LimitOverrunError) as overrun:
        await reader.readuntil(b"f")
    assert overrun.value.consumed == 5
    reader = fed(b"", eof=True)
    with pytest.raises(EOFError):
        await reader.readuntil(b"x")


def test_exception_classes() -> None:
    assert issubclass(IncompleteReadError, asyncio.IncompleteReadError)
    assert issubclass(IncompleteReadError, EOFError)
    assert issubclass(IncompleteReadError, anyio.IncompleteRead)
    assert issubclass(LimitOverrunError, asyncio.LimitOverrunError)
    assert issubclass(LimitOverrunError, anyio.DelimiterNotFound)
    assert portastreams.IncompleteReadError is IncompleteReadError
    assert portastreams.LimitOverrunError is LimitOverrunError


@pytest.mark.parametrize(
    ("partial", "expected"), [(b"", 1), (b"ab", 5), (b"xyz", None)]
)
def test_incomplete_read_error_matches_cpython(
    partial: bytes, expected: int | None
) -> None:
    ours = IncompleteReadError(partial, expected)
    theirs = asyncio.IncompleteReadError(partial, expected)
    assert str(ours) == str(theirs)
    assert ours.args == theirs.args
    assert (ours.partial, ours.expected) == (theirs.partial, theirs.expected)


def test_limit_overrun_error_matches_cpython() -> None:
    ours = LimitOverrunError("some message", 7)
    theirs = asyncio.LimitOverrunError("some message", 7)
    assert str(ours) == str(theirs) == "some message"
    assert ours.args == theirs.args
    assert ours.consumed == theirs.consumed


@pytest.mark.parametrize(
    "error",
    [
        IncompleteReadError(b"abc", 5),
        IncompleteReadError(b"", None),
        LimitOverrunError("Separator is found, but chunk is longer than limit", 9),
    ],
    ids=["incomplete", "incomplete-undefined", "overrun"],
)
def test_exceptions_survive_pickle_and_copy(error: Exception) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error)
        assert clone.args == error.args
        assert str(clone) == str(error)
        for name in ("partial", "expected", "consumed"):
            assert getattr(clone, name, None) == getattr(error, name, None)


async def test_raised_exceptions_survive_pickle() -> None:
    reader = fed(b"ab", eof=True)
    with pytest.raises(IncompleteReadError) as incomplete:
        await reader.readexactly(3)
    clone = pickle.loads(pickle.dumps(incomplete.value))
    assert (clone.partial, clone.expected) == (b"ab", 3)
    reader = fed(b"abc", limit=1)
    with pytest.raises(LimitOverrunError) as overrun:
        await reader.readuntil(b"c")
    clone2 = pickle.loads(pickle.dumps(overrun.value))
    assert isinstance(clone2, LimitOverrunError)
    assert clone2.consumed == 2


# -- repr ---------------------------------------------------------------------------------------


def test_repr_of_a_fresh_reader() -> None:
    assert repr(StreamReader()) == "<StreamReader>"


async def test_repr_shows_the_state() -> None:
    reader = StreamReader(limit=10)
    reader.feed_data(b"abc")
    assert repr(reader) == "<StreamReader 3 bytes limit=10>"
    reader.set_transport(FakeTransport())
    reader.feed_data(b"x" * 20)
    assert (
        repr(reader)
        == "<StreamReader 23 bytes limit=10 transport=<FakeTransport> paused>"
    )
    reader.feed_eof()
    reader.set_exception(ValueError("bad"))
    assert repr(reader) == (
        "<StreamReader 23 bytes eof limit=10 exception=ValueError('bad') "
        "transport=<FakeTransport> paused>"
    )
    waiting = StreamReader()
    async with anyio.create_task_group() as tg:
        await start(tg, waiting.readline)
        assert repr(waiting).startswith("<StreamReader waiter=")
        waiting.feed_eof()


def test_repr_matches_cpython(cpython_loop: asyncio.AbstractEventLoop) -> None:
    ours = StreamReader(limit=7)
    theirs = asyncio.StreamReader(limit=7, loop=cpython_loop)
    assert repr(ours) == repr(theirs)
    for reader in (ours, theirs):
        reader.set_transport(FakeTransport())  # type: ignore[arg-type]
        reader.feed_data(b"x" * 15)
        reader.feed_eof()
        reader.set_exception(ConnectionResetError("reset"))
    assert repr(ours) == repr(theirs)
    assert "paused" in repr(ours)
    default_ours, default_theirs = (
        StreamReader(),
        asyncio.StreamReader(loop=cpython_loop),
    )
    default_ours.feed_data(b"ab")
    default_theirs.feed_data(b"ab")
    assert repr(default_ours) == repr(default_theirs) == "<StreamReader 2 bytes>"


# -- anyio.abc.ByteReceiveStream -----------------------------------------------------------


async def test_receive_drains_the_buffer_first() -> None:
    reader = fed(b"abcdef")
    assert await reader.receive(4) == b"abcd"
    assert await reader.receive() == b"ef"
    async with anyio.create_task_group() as tg:
        pending = await start(tg, reader.receive)
        assert not pending.done
        reader.feed_data(b"gh")
    assert pending.result == b"gh"


async def test_receive_at_eof_raises_end_of_stream() -> None:
    reader = fed(b"ab", eof=True)
    assert await reader.receive() == b"ab"
    with pytest.raises(anyio.EndOfStream):
        await reader.receive()
    with pytest.raises(anyio.EndOfStream):
        await reader.receive(1)


async def test_receive_waiting_for_eof_raises_end_of_stream() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, reader.receive)
        reader.feed_eof()
    assert isinstance(pending.error, anyio.EndOfStream)


@pytest.mark.parametrize("max_bytes", [0, -1])
async def test_receive_needs_a_positive_size(max_bytes: int) -> None:
    reader = fed(b"ab")
    with pytest.raises(ValueError, match="max_bytes"):
        await reader.receive(max_bytes)
    assert bytes(reader._buffer) == b"ab"


async def test_receive_raises_the_stored_exception() -> None:
    reader = fed(b"ab")
    reader.set_exception(ConnectionResetError())
    with pytest.raises(ConnectionResetError):
        await reader.receive()


async def test_reader_composes_with_anyio_buffered_stream() -> None:
    reader = fed(b"key: value\r\nbody...", eof=True)
    buffered = BufferedByteReceiveStream(reader)
    assert await buffered.receive_until(b"\r\n", 100) == b"key: value"
    assert await buffered.receive_exactly(4) == b"body"
    assert await buffered.receive() == b"..."
    with pytest.raises(anyio.EndOfStream):
        await buffered.receive()


async def test_aclose_drops_the_buffer_and_ends_the_stream() -> None:
    reader = fed(b"unread")
    await reader.aclose()
    assert reader.at_eof()
    assert await reader.read() == b""
    with pytest.raises(anyio.EndOfStream):
        await reader.receive()


async def test_aclose_wakes_a_waiting_read_with_eof() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        pending = await start(tg, lambda: reader.read(10))
        await reader.aclose()
    assert pending.result == b""


async def test_async_with_closes_the_reader() -> None:
    reader = fed(b"x")
    async with reader as entered:
        assert entered is reader
    assert reader.at_eof()


@pytest.mark.parametrize("run", ["asyncio", "uvloop"])
def test_a_fed_reader_waits_in_each_event_loop_it_is_used_in(run: str) -> None:
    """A read waits in an asyncio event loop's future, and the reader keeps
    the loop for its next waits (asking for the running loop costs more than
    the rest of a wait on Python 3.10 and 3.11). Used again in a later
    ``asyncio.run()``, once the first loop is closed, it waits in the new
    one."""
    runner: Callable[[Any], Any] = asyncio.run
    if run == "uvloop":
        import uvloop

        runner = uvloop.run
    reader = StreamReader()

    async def line_fed_later(data: bytes) -> bytes:
        asyncio.get_running_loop().call_later(0.01, reader.feed_data, data)
        return await reader.readline()

    assert runner(line_fed_later(b"first\n")) == b"first\n"
    assert runner(line_fed_later(b"second\n")) == b"second\n"


@pytest.mark.parametrize("run", ["asyncio", "uvloop"])
def test_a_fed_reader_moves_to_another_open_loop(run: str) -> None:
    """The loop a reader kept need not be closed for the reader to wait in
    another one: the first loop is still open when the second read waits."""
    if run == "uvloop":
        import uvloop

        new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    reader = StreamReader()

    async def line_fed_later(data: bytes) -> bytes:
        asyncio.get_running_loop().call_later(0.01, reader.feed_data, data)
        return await reader.readline()

    first, second = new_loop(), new_loop()
    try:
        assert first.run_until_complete(line_fed_later(b"first\n")) == b"first\n"
        assert second.run_until_complete(line_fed_later(b"second\n")) == b"second\n"
        assert first.run_until_complete(line_fed_later(b"third\n")) == b"third\n"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("run", ["asyncio", "uvloop"])
def test_a_runtime_error_set_while_waiting_in_the_kept_loop_is_raised(
    run: str,
) -> None:
    """A ``RuntimeError`` given to ``set_exception()`` wakes a read waiting in
    the loop the reader kept, and is raised (as asyncio's reader raises it),
    not taken for a change of loop."""
    runner: Callable[[Any], Any] = asyncio.run
    if run == "uvloop":
        import uvloop

        runner = uvloop.run

    async def outcome(make_reader: Callable[[], Any]) -> list[object]:
        reader = make_reader()
        reader.feed_data(b"kept\n")
        seen: list[object] = [await reader.readline()]  # the loop is kept
        error = RuntimeError("set while waiting")
        asyncio.get_running_loop().call_later(0.01, reader.set_exception, error)
        try:
            seen.append(await reader.readline())
        except RuntimeError as exc:
            seen.append(("raised", exc is error))
        return seen

    expected = runner(outcome(asyncio.StreamReader))
    assert expected == [b"kept\n", ("raised", True)]
    assert runner(outcome(StreamReader)) == expected
