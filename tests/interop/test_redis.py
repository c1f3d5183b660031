"""The Redis example client (examples/redis_client.py) against a real redis-server.

Every test runs on asyncio, uvloop and trio, over TCP and a Unix socket where
the socket matters. Values are checked byte for byte, and where another real
client can say what the server holds, ``redis-cli`` says it. Where CPython's
own streams can answer the same question (what a connection looks like after
a read timed out), they run the same code in a thread and the answers are
compared.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import anyio
import pytest
from redis_server import RedisServer, running_redis
from sockets import Kind
from subprocesses import EXAMPLES

import portastreams

sys.path.insert(0, str(EXAMPLES))  # the examples are scripts, not a package
from redis_client import (
    LineReader,
    Message,
    RedisClient,
    RedisError,
    encode_command,
    read_reply,
)

pytestmark = pytest.mark.anyio

T = TypeVar("T")

MiB = 2**20

#: Deadline of one test: a hang fails, it does not block the run.
DEADLINE = 60


@pytest.fixture(scope="module")
def redis_process() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis(redis_process: RedisServer) -> RedisServer:
    """The module's server, emptied for this test."""
    subprocess.run(
        [redis_process.cli_path, "-p", str(redis_process.port), "FLUSHALL"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return redis_process


async def connect(server: RedisServer, kind: Kind) -> RedisClient:
    if kind == "unix":
        return await RedisClient.connect_unix(server.unix_path)
    return await RedisClient.connect(server.host, server.port)


def binary_value(size: int) -> bytes:
    """Random bytes with CRLF, LF and NUL inside: nothing may be taken for framing."""
    value = bytearray(os.urandom(size))
    for offset, marker in ((0, b"\r\n"), (size // 2, b"\n\x00"), (size - 2, b"\r\n")):
        if size >= 4:
            value[offset : offset + 2] = marker
    return bytes(value)


# -- commands ------------------------------------------------------------------


async def test_ping(redis: RedisServer, kind: Kind) -> None:
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            assert await client.execute("PING") == "PONG"  # a simple string
            assert await client.execute("PING", b"\x00\r\n") == b"\x00\r\n"  # bulk


@pytest.mark.parametrize("size", [0, 1, 65535, 65536 + 7, 3 * MiB + 1, 5 * MiB])
async def test_set_get_binary_value(redis: RedisServer, kind: Kind, size: int) -> None:
    value = binary_value(size)
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            assert await client.execute("SET", "ours", value) == "OK"
            assert await client.execute("STRLEN", "ours") == size
            assert await client.execute("GET", "ours") == value
            assert await client.execute("GET", "missing") is None  # the null bulk

            # redis-cli, the reference client, reads back what we stored...
            assert (
                await redis.cli("--no-raw", "STRLEN", "ours")
                == b"(integer) %d\n" % size
            )
            assert await redis.cli("GET", "ours") == value + b"\n"
            # ...and stores what we read back.
            assert await redis.cli("-x", "SET", "theirs", stdin=value) == b"OK\n"
            assert await client.execute("GET", "theirs") == value


async def test_pipeline_of_10000_commands(redis: RedisServer, kind: Kind) -> None:
    values = [b"%d:" % i + os.urandom(i % 100) + b"\r\n" for i in range(5000)]
    commands: list[tuple[str | bytes, ...]] = []
    expected: list[object] = []
    for i, value in enumerate(values):
        commands += [("SET", f"key:{i}", value), ("GET", f"key:{i}")]
        expected += ["OK", value]
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            replies = await client.pipeline(commands)
            assert len(replies) == 10_000
            assert replies == expected
            # Every key holds its value, as the server itself reports.
            assert await client.execute("DBSIZE") == 5000
            assert await redis.cli("GET", "key:4321") == values[4321] + b"\n"


async def test_pipeline_replies_are_sent_while_commands_still_go_out(
    redis: RedisServer, kind: Kind
) -> None:
    # 10,000 commands of 2 KiB: far more than the socket buffers hold, so the
    # server answers the first ones while the last are still being written.
    payloads = [b"%05d" % i + os.urandom(2043) for i in range(10_000)]
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            replies = await client.pipeline(("ECHO", p) for p in payloads)
            assert replies == payloads


# -- error replies ---------------------------------------------------------------


async def test_error_reply_is_raised_with_the_servers_message(
    redis: RedisServer, kind: Kind
) -> None:
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            await client.execute("SET", "string", "value")
            with pytest.raises(RedisError) as caught:
                await client.execute("LPUSH", "string", "x")
            # The same message redis-cli prints for the same command.
            reference = await redis.cli("LPUSH", "string", "x")
            assert caught.value.message.encode() == reference.strip()
            assert caught.value.prefix == "WRONGTYPE"

            with pytest.raises(RedisError) as caught:
                await client.execute("NO-SUCH-COMMAND", "arg")
            assert caught.value.prefix == "ERR"
            assert "NO-SUCH-COMMAND" in caught.value.message

            # An error reply leaves the connection usable.
            assert await client.execute("GET", "string") == b"value"


async def test_error_replies_in_a_pipeline_are_returned_in_place(
    redis: RedisServer, kind: Kind
) -> None:
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            replies = await client.pipeline(
                [
                    ("SET", "s", "1"),
                    ("INCR", "s"),
                    ("LPUSH", "s", "x"),
                    ("INCRBY", "s", "not-a-number"),
                    ("GET", "s"),
                ]
            )
            assert replies[:2] == ["OK", 2]
            assert isinstance(replies[2], RedisError)
            assert replies[2].prefix == "WRONGTYPE"
            assert isinstance(replies[3], RedisError)
            assert replies[3].prefix == "ERR"
            assert replies[4] == b"2"


# -- pub/sub -----------------------------------------------------------------------


async def test_pubsub(redis: RedisServer, kind: Kind) -> None:
    sent = [
        (b"first", b"hello"),
        (b"second", binary_value(100)),
        (b"first", b""),
        (b"second", binary_value(MiB)),
        (b"first", b"the last one\r\n"),
    ]
    with anyio.fail_after(DEADLINE):
        async with (
            await connect(redis, kind) as subscriber,
            await connect(redis, kind) as publisher,
        ):
            await subscriber.subscribe("first", b"second")
            for channel, data in sent:
                assert await publisher.execute("PUBLISH", channel, data) == 1
            # And one from redis-cli, the reference client.
            assert await redis.cli("PUBLISH", "second", "from redis-cli") == b"1\n"
            received = [await subscriber.next_message() for _ in range(len(sent) + 1)]
            assert received == [Message(*message) for message in sent] + [
                Message(b"second", b"from redis-cli")
            ]

            # Messages on channels nobody subscribed to go nowhere.
            assert await publisher.execute("PUBLISH", "third", "lost") == 0


async def test_pubsub_message_waits_across_a_timeout(
    redis: RedisServer, kind: Kind
) -> None:
    # A subscriber polls with a timeout, as a loop that also does other work
    # would: a timed-out wait must not lose the message that follows.
    with anyio.fail_after(DEADLINE):
        async with (
            await connect(redis, kind) as subscriber,
            await connect(redis, kind) as publisher,
        ):
            await subscriber.subscribe("news")
            with anyio.move_on_after(0.1) as scope:
                await subscriber.next_message()
            assert scope.cancelled_caught
            assert not subscriber.broken
            await publisher.execute("PUBLISH", "news", "after the timeout")
            assert await subscriber.next_message() == Message(
                b"news", b"after the timeout"
            )


# -- the connection killed by the server in the middle of a pipeline ----------------


async def test_client_kill_in_the_middle_of_a_pipeline(
    redis: RedisServer, kind: Kind
) -> None:
    # 10,000 ECHOs of 4 KiB: 40 MiB of replies. The client reads 1,000 of them
    # and stops; the server, still holding most of the replies, is told by a
    # second connection to kill the first. The client must then read every
    # reply that did reach it, intact and in order, and end with an EOF or a
    # reset -- never hang, never see a corrupted or reordered reply.
    payloads = [b"%05d" % i + os.urandom(4091) for i in range(10_000)]
    received: list[bytes] = []
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            client_id = await client.execute("CLIENT", "ID")
            assert isinstance(client_id, int)
            for payload in payloads:
                client.send("ECHO", payload)
            for _ in range(1000):
                reply = await client.read_reply()
                assert isinstance(reply, bytes)
                received.append(reply)

            async with await connect(redis, kind) as killer:
                assert await killer.execute("CLIENT", "KILL", "ID", client_id) == 1

            with pytest.raises((ConnectionError, EOFError)) as caught:
                await read_until_failure(client, received)
            # The failure usually cuts a reply short (the client then refuses
            # to go on); it can also land exactly between two replies.
            if client.broken:
                with pytest.raises(ConnectionError, match="cut short"):
                    await client.read_reply()
            else:
                with pytest.raises((ConnectionError, EOFError)):
                    await client.read_reply()

    assert 1000 <= len(received) < len(payloads)
    assert received == payloads[: len(received)]
    # A reset, or a broken pipe when the kill lands while commands are still
    # being written (asyncio's streams report that on reads too), or an EOF.
    error = caught.value
    if isinstance(error, EOFError):
        assert isinstance(error, portastreams.IncompleteReadError)
    else:
        assert isinstance(error, ConnectionError)


async def read_until_failure(client: RedisClient, received: list[bytes]) -> None:
    """Read bulk replies into ``received`` until reading fails."""
    while True:
        reply = await client.read_reply()
        assert isinstance(reply, bytes)
        received.append(reply)


async def test_connection_closed_by_the_server_between_replies(
    redis: RedisServer, kind: Kind
) -> None:
    with anyio.fail_after(DEADLINE):
        async with await connect(redis, kind) as client:
            client.send("SET", "k", "v")
            client.send("QUIT")  # the server answers +OK, then closes
            assert await client.read_reply() == "OK"
            assert await client.read_reply() == "OK"
            with pytest.raises(portastreams.IncompleteReadError) as caught:
                await client.read_reply()
            assert caught.value.partial == b""  # a clean end, between replies
            assert client.reader.at_eof()
        async with await connect(redis, kind) as other:
            assert await other.execute("GET", "k") == b"v"


# -- a read timeout against DEBUG SLEEP, compared with asyncio's own streams ----------


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Reader(LineReader, Protocol):
    def at_eof(self) -> bool: ...
    def exception(self) -> BaseException | None: ...


#: The DEBUG SLEEP scenario, run on an (reader, writer) pair; returns what it saw.
Scenario = Callable[[Reader, Writer], Awaitable[list[object]]]


async def sleep_then_read_with_fail_after(
    reader: Reader, writer: Writer
) -> list[object]:
    seen: list[object] = []
    writer.write(encode_command("SET", "before", "1"))
    seen.append(await read_reply(reader))
    # Two commands at once: both replies come after the server's sleep.
    writer.write(encode_command("DEBUG", "SLEEP", "0.5"))
    writer.write(encode_command("GET", "before"))
    try:
        with anyio.fail_after(0.1):
            seen.append(await read_reply(reader))
    except TimeoutError:
        seen.append("timed out")
    # The connection, right after the timeout: open, nothing failed.
    seen += [writer.is_closing(), reader.at_eof(), reader.exception()]
    # Nothing was lost: the late replies arrive, in order.
    seen += [await read_reply(reader), await read_reply(reader)]
    writer.write(encode_command("PING"))
    seen.append(await read_reply(reader))
    return seen


async def sleep_then_read_with_move_on_after(
    reader: Reader, writer: Writer
) -> list[object]:
    seen: list[object] = []
    writer.write(encode_command("DEBUG", "SLEEP", "0.5"))
    with anyio.move_on_after(0.1) as scope:
        seen.append(await read_reply(reader))
    seen += [scope.cancelled_caught, writer.is_closing(), reader.at_eof()]
    seen.append(await read_reply(reader))
    # A client may also give up on the connection after a timeout.
    writer.write(encode_command("DEBUG", "SLEEP", "0.5"))
    with anyio.move_on_after(0.1) as scope:
        seen.append(await read_reply(reader))
    writer.close()
    await writer.wait_closed()
    seen += [scope.cancelled_caught, writer.is_closing()]
    return seen


async def open_portastreams(
    server: RedisServer, kind: Kind
) -> tuple[portastreams.StreamReader, portastreams.StreamWriter]:
    if kind == "unix":
        return await portastreams.open_unix_connection(server.unix_path)
    return await portastreams.open_connection(server.host, server.port)


def asyncio_reference(
    scenario: Scenario, server: RedisServer, kind: Kind
) -> list[object]:
    """Run ``scenario`` over CPython's own streams, in a fresh event loop."""

    async def main() -> list[object]:
        if kind == "unix":
            reader, writer = await asyncio.open_unix_connection(server.unix_path)
        else:
            reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            return await scenario(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()

    return asyncio.run(main())


async def in_a_fresh_thread(function: Callable[..., T], *args: object) -> T:
    """Call ``function`` in a new thread, with a context of its own, and wait for it.

    Not ``anyio.to_thread``: its threads inherit this task's context, in which
    AnyIO code would take the thread for the current backend's (trio's).
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        future = executor.submit(function, *args)
        return await anyio.to_thread.run_sync(future.result)


@pytest.mark.parametrize(
    "scenario",
    [sleep_then_read_with_fail_after, sleep_then_read_with_move_on_after],
    ids=["fail_after", "move_on_after"],
)
async def test_debug_sleep_against_a_read_timeout(
    redis: RedisServer, kind: Kind, scenario: Scenario
) -> None:
    with anyio.fail_after(DEADLINE):
        # DEBUG SLEEP blocks the whole server, so one after the other.
        expected = await in_a_fresh_thread(asyncio_reference, scenario, redis, kind)
        reader, writer = await open_portastreams(redis, kind)
        try:
            seen = await scenario(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()
    assert seen == expected
    # The reference itself saw what the test is about.
    assert "timed out" in expected or True in expected
    assert "OK" in expected
