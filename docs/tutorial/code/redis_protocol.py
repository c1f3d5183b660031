"""Talking to Redis: its protocol, RESP2, with readline() and readexactly().

Needs a Redis server: python redis_protocol.py [PORT] (default 6379).
"""

import os
import sys
from collections.abc import Sequence

import anyio

import portastreams


class RedisError(Exception):
    """An error reply from the server, such as ``WRONGTYPE Operation against ...``."""


def encode(*args: bytes | str | int) -> bytes:
    """A command as RESP2 sends it: an array of length-prefixed bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += [b"$%d\r\n" % len(data), data, b"\r\n"]
    return b"".join(out)


async def read_reply(reader: portastreams.StreamReader) -> object:
    """Read one reply: a header line, then as many bytes as the header announces."""
    line = await reader.readline()
    if not line.endswith(b"\r\n"):  # b"" or a partial line: the stream ended
        raise portastreams.IncompleteReadError(line, None)
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":  # simple string: +OK
        return rest.decode()
    if kind == b"-":  # error: -ERR unknown command
        return RedisError(rest.decode())
    if kind == b":":  # integer: :42
        return int(rest)
    if kind == b"$":  # bulk string: $5\r\nhello\r\n, or $-1 for "no value"
        if int(rest) < 0:
            return None
        data = await reader.readexactly(int(rest) + 2)  # the bytes and their CRLF
        return data[:-2]
    if kind == b"*":  # array: *2 followed by two replies
        return [await read_reply(reader) for _ in range(int(rest))]
    raise ValueError(f"not a RESP2 reply: {line!r}")


async def command(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    *args: bytes | str | int,
) -> object:
    """Send one command and wait for its reply; raise an error reply."""
    writer.write(encode(*args))
    reply = await read_reply(reader)
    if isinstance(reply, RedisError):
        raise reply
    return reply


async def pipeline(
    reader: portastreams.StreamReader,
    writer: portastreams.StreamWriter,
    commands: Sequence[tuple[bytes | str | int, ...]],
) -> list[object]:
    """Send all the commands, then read all the replies: one round trip."""
    for args in commands:
        writer.write(encode(*args))
    return [await read_reply(reader) for _ in commands]


async def subscribe_and_publish(port: int) -> list[object]:
    """Pub/sub: one connection listens on a channel, another publishes to it."""
    sub_reader, sub_writer = await portastreams.open_connection("127.0.0.1", port)
    pub_reader, pub_writer = await portastreams.open_connection("127.0.0.1", port)
    try:
        sub_writer.write(encode("SUBSCRIBE", "tutorial:news"))
        confirmation = await read_reply(sub_reader)  # [b"subscribe", channel, 1]
        await command(pub_reader, pub_writer, "PUBLISH", "tutorial:news", "hi!")
        message = await read_reply(sub_reader)  # [b"message", channel, data]
        return [confirmation, message]
    finally:
        for writer in (sub_writer, pub_writer):
            writer.close()
            await writer.wait_closed()


async def main(port: int = 6379) -> list[object]:
    reader, writer = await portastreams.open_connection("127.0.0.1", port)
    results: list[object] = []
    try:
        results.append(await command(reader, writer, "PING"))

        value = os.urandom(1024 * 1024)  # any bytes: CRLF inside is no problem
        await command(reader, writer, "SET", "tutorial:blob", value)
        results.append(await command(reader, writer, "GET", "tutorial:blob") == value)

        increments = [("INCR", "tutorial:counter")] * 10_000
        replies = await pipeline(reader, writer, increments)
        results.append(replies[-1])

        try:
            await command(reader, writer, "LPUSH", "tutorial:blob", "oops")
        except RedisError as error:
            results.append(str(error))

        await command(reader, writer, "DEL", "tutorial:blob", "tutorial:counter")
    finally:
        writer.close()
        await writer.wait_closed()
    results += await subscribe_and_publish(port)
    for result in results:
        print(result)
    return results


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 6379)
