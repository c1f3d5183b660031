"""``readuntil`` edge cases the randomised comparison rarely reaches, compared with CPython.

Each case feeds chunks one at a time to a reader whose ``readuntil`` is
already waiting (so the separator search runs between chunks, where its
saved offset matters), and may take bytes off the front of the buffer with a
``read(k)`` while the search waits (which CPython allows, and which leaves
the search's saved offset pointing past where it should: portastreams
reproduces that exactly). It runs on portastreams and on CPython's own
``asyncio.StreamReader`` (with 3.13's ``readuntil`` on older Pythons, see
``test_reader_differential``), and compares the outcomes: the result or the
exception with its attributes, and what is left in the buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from reference import on_asyncio
from test_reader_differential import ReferenceReader

import portastreams

pytestmark = pytest.mark.anyio

Separator = Any  # bytes, a tuple of bytes, or a wrong type on purpose
Outcome = tuple[object, ...]
#: ``bytes`` to feed, or ``k`` for a ``read(k)`` while ``readuntil`` waits.
Step = bytes | int


def describe(exc: BaseException, reader_buffer: bytes) -> Outcome:
    return (
        type(exc).__name__,
        str(exc),
        getattr(exc, "partial", None),
        getattr(exc, "expected", None),
        getattr(exc, "consumed", None),
        reader_buffer,
    )


def start_read(reader: Any, separator: Separator, method: str) -> Any:
    """The awaitable of the read under test: ``readuntil(separator)`` or ``readline()``."""
    if method == "readline":
        return reader.readline()
    return reader.readuntil(separator)


async def portastreams_outcome(
    separator: Separator,
    chunks: Sequence[Step],
    eof: bool,
    limit: int,
    method: str = "readuntil",
    prefill: bytes = b"",
) -> Outcome:
    reader = portastreams.StreamReader(limit=limit)
    if prefill:
        reader.feed_data(prefill)
    result: list[Outcome] = []
    taken: list[bytes] = []

    async def read() -> None:
        try:
            line = await start_read(reader, separator, method)
        except Exception as exc:
            result.append(describe(exc, bytes(reader._buffer)))
        else:
            result.append(("result", line, bytes(reader._buffer)))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(read)
        for chunk in chunks:
            await anyio.wait_all_tasks_blocked()
            if result:
                break
            if isinstance(chunk, int):
                taken.append(await reader.read(chunk))
            else:
                reader.feed_data(chunk)
        if eof:
            await anyio.wait_all_tasks_blocked()
            if not result:
                reader.feed_eof()
        await anyio.wait_all_tasks_blocked()
        if not result:
            task_group.cancel_scope.cancel()
            result.append(("waiting", bytes(reader._buffer)))
    return (*result[0], taken)


async def asyncio_outcome(
    separator: Separator,
    chunks: Sequence[Step],
    eof: bool,
    limit: int,
    method: str = "readuntil",
    prefill: bytes = b"",
) -> Outcome:
    reader: Any = ReferenceReader(limit=limit)  # _buffer is private
    if prefill:
        reader.feed_data(prefill)
    task = asyncio.ensure_future(start_read(reader, separator, method))
    taken: list[bytes] = []

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    for chunk in chunks:
        await settle()
        if task.done():
            break
        if isinstance(chunk, int):
            taken.append(await reader.read(chunk))
        else:
            reader.feed_data(chunk)
    if eof:
        await settle()
        if not task.done():
            reader.feed_eof()
    await settle()
    if not task.done():
        task.cancel()
        return ("waiting", bytes(reader._buffer), taken)
    exc = task.exception()
    if exc is not None:
        return (*describe(exc, bytes(reader._buffer)), taken)
    return ("result", task.result(), bytes(reader._buffer), taken)


CASES = [
    # A longer separator that starts before the first chunk ends, found only
    # when the next chunk arrives: the search must resume at offset 0.
    pytest.param(
        (b"abc", b"x"), [b"ab", b"c"], False, 100, id="long-sep-across-chunks"
    ),
    pytest.param((b"x", b"abc"), [b"a", b"b", b"c"], False, 100, id="byte-by-byte"),
    pytest.param((b"x", b"abc"), [b"ab", b"c", b"x"], False, 100, id="two-candidates"),
    pytest.param((b"\r\n", b"\n"), [b"a\r", b"\n"], False, 100, id="crlf-split"),
    pytest.param((b"abcd", b"z"), [b"abc"], True, 100, id="partial-at-eof"),
    pytest.param((b"abcd", b"z"), [b"ab", b"cd"], False, 1, id="found-past-limit"),
    pytest.param(
        (b"abcd", b"z"), [b"aaaa", b"abcd"], False, 2, id="not-found-in-limit"
    ),
    pytest.param(b"abc", [b"xxab", b"c"], False, 100, id="single-sep-across-chunks"),
    # Exactly at the limit: a separator starting there, a search that has
    # looked at exactly ``limit`` bytes.
    pytest.param(b"\n", [b"abc\n"], False, 3, id="found-at-limit"),
    pytest.param(b"\n", [b"abc", b"\n"], False, 3, id="searched-up-to-limit"),
    pytest.param((b"\n", b"zz"), [b"abc", b"\n"], False, 3, id="tuple-at-limit"),
    # A read(k) while the search waits: CPython's saved offset is then k
    # bytes too far, so it skips a separator that starts before it.
    pytest.param(b"\n", [b"abcd", 1, b"\n\n"], False, 100, id="stale-offset-skips"),
    pytest.param(
        (b"\n", b"zz"), [b"abcd", 2, b"\n\n"], False, 100, id="stale-offset-tuple"
    ),
    # ... and finds nothing until the buffer is longer than that offset again.
    pytest.param(
        b"\n", [b"abcd", 3, b"x", b"\n", b"yz\n"], False, 100, id="stale-offset-waits"
    ),
    pytest.param(b"\n", [b"abcd", 3, b"x", b"\n"], True, 100, id="stale-offset-eof"),
]


def as_bytearrays(separator: bytes | tuple[bytes, ...]) -> Separator:
    if isinstance(separator, tuple):
        return tuple(bytearray(s) for s in separator)
    return bytearray(separator)


#: A ``bytes`` separator takes the reader's inline search, any other the
#: general one (:class:`portastreams._buffer.SeparatorSearch`): both are
#: compared with CPython.
SEPARATOR_KINDS = [
    pytest.param(lambda separator: separator, id="bytes"),
    pytest.param(as_bytearrays, id="bytearray"),
]


@pytest.mark.parametrize("kind", SEPARATOR_KINDS)
@pytest.mark.parametrize(("separator", "chunks", "eof", "limit"), CASES)
async def test_readuntil_between_chunks_matches_asyncio(
    separator: Separator,
    chunks: list[Step],
    eof: bool,
    limit: int,
    kind: Any,
) -> None:
    separator = kind(separator)
    expected = await on_asyncio(lambda: asyncio_outcome(separator, chunks, eof, limit))
    actual = await portastreams_outcome(separator, chunks, eof, limit)
    assert actual == expected


@pytest.mark.parametrize(
    ("chunks", "eof", "limit"),
    [
        pytest.param(chunks, eof, limit, id=param.id)
        for param in CASES
        for separator, chunks, eof, limit in [param.values]
        if separator == b"\n"
    ]
    + [
        pytest.param([b"abc", b"defg", b"\n"], False, 5, id="line-past-limit"),
        pytest.param([b"ab", 1, b"cdef", b"gh"], False, 5, id="stale-past-limit"),
        pytest.param([b"ab", 2, b"\n"], False, 5, id="stale-buffer-emptied"),
        pytest.param([b"abc", 1, b"de"], True, 100, id="stale-then-eof"),
    ],
)
async def test_readline_between_chunks_matches_asyncio(
    chunks: list[Step], eof: bool, limit: int
) -> None:
    """``readline`` waits in its own inline search: the same outcomes as CPython's."""
    expected = await on_asyncio(
        lambda: asyncio_outcome(b"\n", chunks, eof, limit, method="readline")
    )
    actual = await portastreams_outcome(b"\n", chunks, eof, limit, method="readline")
    assert actual == expected


@pytest.mark.parametrize(
    ("prefill", "chunks", "eof", "limit"),
    [
        pytest.param(b"abc", [b"d\nx"], False, 100, id="rest-arrives"),
        pytest.param(b"abc", [b"d", b"e", b"\n"], False, 100, id="byte-by-byte"),
        pytest.param(b"abc", [], True, 100, id="eof"),
        pytest.param(b"abc", [b"\n"], False, 3, id="newline-at-limit"),
        pytest.param(b"abc", [b"d\n"], False, 3, id="newline-past-limit"),
        pytest.param(b"abcd", [b"\n"], False, 3, id="buffered-past-limit"),
        pytest.param(b"abc\nd", [], False, 2, id="buffered-line-past-limit"),
        pytest.param(b"abcd", [1, b"\n\n"], False, 100, id="stale-offset"),
        pytest.param(b"abcd", [4, b"xy\n"], False, 100, id="stale-buffer-emptied"),
    ],
)
async def test_readline_with_a_partial_line_buffered_matches_asyncio(
    prefill: bytes, chunks: list[Step], eof: bool, limit: int
) -> None:
    """A ``readline`` that starts with part of a line buffered resumes its search."""
    expected = await on_asyncio(
        lambda: asyncio_outcome(
            b"\n", chunks, eof, limit, method="readline", prefill=prefill
        )
    )
    actual = await portastreams_outcome(
        b"\n", chunks, eof, limit, method="readline", prefill=prefill
    )
    assert actual == expected


@pytest.mark.parametrize(
    ("separator", "wrong_type"),
    [(123, "int"), ((b"\n", "x"), "str"), ("\n", "str"), ([b"\n"], "list")],
)
async def test_separator_of_the_wrong_type_is_a_type_error(
    separator: Separator, wrong_type: str
) -> None:
    """A ``TypeError`` as in CPython, whose message names what was wrong.

    CPython's message is whatever ``len()`` or ``bytearray.find()`` says;
    portastreams checks the separator first and says what it expected.
    """
    chunks = [b"data\nmore x"]
    expected = await on_asyncio(lambda: asyncio_outcome(separator, chunks, False, 100))
    assert expected[0] == "TypeError"
    reader = portastreams.StreamReader()
    reader.feed_data(chunks[0])
    with pytest.raises(TypeError) as info:
        await reader.readuntil(separator)
    assert str(info.value) == (
        f"separator must be bytes or a tuple of bytes, not {wrong_type}"
    )
    assert bytes(reader._buffer) == chunks[0]
