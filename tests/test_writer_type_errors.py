"""Writing something that is not bytes: asyncio's ``TypeError``, on every backend.

The expected exceptions are not typed in: each case is first run through
asyncio's own ``StreamWriter`` (``asyncio.open_connection`` over a socket
pair, on a plain asyncio loop in a worker thread), and portastreams must
raise the same type with the same message. uvloop's transports have their
own message (``memoryview: a bytes-like object is required``), which the
writer replaces with asyncio's.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import anyio
import pytest

import portastreams

pytestmark = pytest.mark.anyio

Call = Callable[[Any], None]

#: ``(id, what the program does with its writer)``
BAD_WRITES: list[tuple[str, Call]] = [
    ("write-str", lambda writer: writer.write("text")),
    ("write-int", lambda writer: writer.write(12)),
    ("write-list", lambda writer: writer.write([b"a"])),
    ("writelines-str-item", lambda writer: writer.writelines(["text"])),
    ("writelines-second-item", lambda writer: writer.writelines([b"ok", "text"])),
    ("writelines-tuple", lambda writer: writer.writelines((b"ok", 3))),
    ("writelines-str", lambda writer: writer.writelines("ab")),
    ("writelines-int", lambda writer: writer.writelines(5)),
]


def _failing_items() -> Iterator[bytes]:
    yield b"ok"
    raise TypeError("the items' own error")


#: An iterator with a bad item: its items cannot be looked at twice.
ITERATOR_WRITES: list[tuple[str, Call]] = [
    (
        "writelines-failing-generator",
        lambda writer: writer.writelines(_failing_items()),
    ),
    ("writelines-generator", lambda writer: writer.writelines(x for x in ["text"])),
    (
        "writelines-iterator-second-item",
        lambda writer: writer.writelines(iter([b"ok", "text"])),
    ),
]

#: Not bytes, and false: uvloop's transport returns before looking at the type.
FALSY_WRITES: list[tuple[str, Call]] = [
    ("write-empty-str", lambda writer: writer.write("")),
    ("write-none", lambda writer: writer.write(None)),
    ("write-zero", lambda writer: writer.write(0)),
]


Outcome = tuple[type[BaseException], str] | None


def _outcome(call: Call, writer: Any) -> Outcome:
    try:
        call(writer)
    except Exception as exc:
        return type(exc), str(exc)
    return None


async def _rejected_writelines_then(
    writer: Any, peer: socket.socket, data: bytes = b""
) -> bytes:
    """``writelines([b"ok", "text"])``, ``write(data)``, close: what the peer gets."""
    with pytest.raises(TypeError):
        writer.writelines([b"ok", "text"])
    writer.write(data)
    writer.close()
    await writer.wait_closed()
    received = b""
    while chunk := await anyio.to_thread.run_sync(peer.recv, 65536):
        received += chunk
    return received


@dataclass
class Reference:
    """What asyncio's own streams do."""

    outcomes: dict[str, Outcome]
    received_after_rejected_writelines: bytes


def _asyncio_reference() -> Reference:
    async def collect() -> Reference:
        outcomes = {}
        for name, call in BAD_WRITES + FALSY_WRITES + ITERATOR_WRITES:
            ours, peer = socket.socketpair()
            with peer:
                _, writer = await asyncio.open_connection(sock=ours)
                outcomes[name] = _outcome(call, writer)
                writer.close()
                await writer.wait_closed()
        ours, peer = socket.socketpair()
        with peer:
            _, writer = await asyncio.open_connection(sock=ours)
            received = await _rejected_writelines_then(writer, peer, b"after")
        return Reference(outcomes, received)

    return asyncio.run(collect())


@pytest.fixture(scope="module")
def asyncio_reference() -> Reference:
    # In a thread of its own: the test itself may be running in an event loop.
    result: list[Reference] = []
    thread = threading.Thread(target=lambda: result.append(_asyncio_reference()))
    thread.start()
    thread.join(timeout=30)
    assert result, "asyncio's streams did not answer"
    return result[0]


async def _raise_what_asyncio_raises(
    cases: list[tuple[str, Call]], reference: Reference
) -> None:
    """Each case on a fresh connection: the same exception as asyncio's writer."""
    with anyio.fail_after(10):
        for name, call in cases:
            expected = reference.outcomes[name]
            assert expected is not None, f"asyncio accepted {name}"
            assert expected[0] is TypeError
            ours, peer = socket.socketpair()
            with peer:
                _, writer = await portastreams.open_connection(sock=ours)
                try:
                    outcome = _outcome(call, writer)
                finally:
                    writer.close()
                    await writer.wait_closed()
                assert outcome == expected, name


async def test_bad_writes_raise_what_asyncio_raises(
    asyncio_reference: Reference,
) -> None:
    await _raise_what_asyncio_raises(BAD_WRITES, asyncio_reference)


async def test_close_after_a_rejected_writelines_does_not_hang() -> None:
    ours, peer = socket.socketpair()
    with peer, anyio.fail_after(10):
        _, writer = await portastreams.open_connection(sock=ours)
        # uvloop kept b"ok" buffered but unsent, and wait_closed() never returned.
        received = await _rejected_writelines_then(writer, peer)
    # asyncio sends nothing; see test_a_rejected_writelines_writes_nothing.
    assert received in (b"", b"ok")


async def test_a_rejected_writelines_writes_nothing(
    asyncio_reference: Reference,
) -> None:
    """As asyncio: a bad item anywhere, and none of the items is written."""
    ours, peer = socket.socketpair()
    with peer, anyio.fail_after(10):
        _, writer = await portastreams.open_connection(sock=ours)
        received = await _rejected_writelines_then(writer, peer, b"after")
    assert received == asyncio_reference.received_after_rejected_writelines


async def test_false_non_bytes_writes_raise_what_asyncio_raises(
    asyncio_reference: Reference,
) -> None:
    await _raise_what_asyncio_raises(FALSY_WRITES, asyncio_reference)


async def test_bad_iterator_writelines_raise_what_asyncio_raises(
    asyncio_reference: Reference,
) -> None:
    await _raise_what_asyncio_raises(ITERATOR_WRITES, asyncio_reference)


#: Bytes-like items that are not bytes, bytearray or memoryview.
OTHER_BYTES_LIKE: Final = (array.array("B", b"array"), memoryview(b"view")[1:])


async def _sent_by_writelines(open_connection: Any) -> bytes:
    """What a peer receives from ``writelines(OTHER_BYTES_LIKE)`` and a close."""
    ours, peer = socket.socketpair()
    with peer:
        _, writer = await open_connection(sock=ours)
        writer.writelines(OTHER_BYTES_LIKE)
        writer.close()
        await writer.wait_closed()
        # (The close is done: everything is in the peer's buffer already.)
        peer.setblocking(False)
        received = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := peer.recv(65536):
                received += chunk
    return received


async def test_writelines_takes_every_bytes_like_item_as_asyncio() -> None:
    result: list[bytes] = []
    thread = threading.Thread(
        target=lambda: result.append(
            asyncio.run(_sent_by_writelines(asyncio.open_connection))
        )
    )
    thread.start()
    await anyio.to_thread.run_sync(thread.join, 30)
    assert result, "asyncio's streams did not answer"
    assert result[0] == b"arrayiew"
    with anyio.fail_after(10):
        assert await _sent_by_writelines(portastreams.open_connection) == result[0]
