"""A Redis client (RESP2) on portastreams: commands, pipelines, errors, pub/sub.

Usage:
  python examples/redis_client.py --backend trio [--host 127.0.0.1] [--port 6379]
                                  [--unix PATH] [COMMAND [ARG ...]]

With a command (``SET greeting hello``, ``GET greeting``), print its reply;
without one, run a short tour: PING, SET/GET of a 3 MiB binary value, a
pipeline of 10,000 commands, an error reply, and pub/sub.

Redis's protocol (RESP2, https://redis.io/docs/latest/develop/reference/protocol-spec/)
is a good fit for asyncio's streams: every reply starts with one line ending
in CRLF, and the only variable-length payload, a bulk string, announces its
length first. So ``readline()`` reads each header line and
``readexactly(n)`` each payload, binary data included, without ever scanning
it for a separator.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, TypeAlias

import anyio

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}

#: What a command is made of: each argument is sent as a bulk string.
Arg: TypeAlias = "bytes | str | int"

#: A decoded reply: ``+`` simple string -> ``str``, ``:`` integer -> ``int``,
#: ``$`` bulk string -> ``bytes`` (``None`` for the null bulk string),
#: ``*`` array -> ``list`` (``None`` for the null array), ``-`` error ->
#: :class:`RedisError` (returned by the readers, raised by ``execute``).
Reply: TypeAlias = "str | int | bytes | RedisError | list[Reply] | None"


class RedisError(Exception):
    """An error reply (``-ERR unknown command ...``) from the server.

    ``prefix`` is its first word, the error kind: ``ERR``, ``WRONGTYPE``, ...
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.prefix = message.split(" ", 1)[0]


class ProtocolError(Exception):
    """The server sent something that is not RESP2."""


class LineReader(Protocol):
    """The two reads a RESP2 parser needs: any asyncio-style StreamReader has them."""

    async def readline(self) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...


def encode_command(*args: Arg) -> bytes:
    """Encode one command as a RESP2 array of bulk strings (binary-safe)."""
    if not args:
        raise ValueError("a command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts += [b"$%d\r\n" % len(data), data, b"\r\n"]
    return b"".join(parts)


async def read_reply(reader: LineReader) -> Reply:
    """Read one whole reply.

    At the end of the stream -- before a reply, or inside one -- raise
    ``IncompleteReadError`` (an ``EOFError``; ``partial`` holds what was cut
    off, ``b""`` at a clean end between replies). A reset connection raises
    ``ConnectionResetError`` as asyncio does.

    Cancelling the read while it waits for the reply's first line consumes
    nothing (portastreams' reads are cancellation-safe), so the reply can
    still be read later. Cancelling it later leaves the rest of the reply
    unread: the connection is then out of step, which is why
    :meth:`RedisClient.read_reply` closes it.
    """
    return await finish_reply(await reader.readline(), reader)


async def finish_reply(line: bytes, reader: LineReader) -> Reply:
    """Decode a reply whose first ``line`` was read, reading the rest from ``reader``."""
    if not line.endswith(b"\r\n"):
        # readline() returns a partial line, or b"", only at the end of the stream.
        raise portastreams.IncompleteReadError(line, None)
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        return RedisError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        length = int(body)
        if length < 0:
            return None
        data = await reader.readexactly(length)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("a bulk string does not end with CRLF")
        return data
    if kind == b"*":
        count = int(body)
        if count < 0:
            return None
        return [await read_reply(reader) for _ in range(count)]
    raise ProtocolError(f"not a RESP2 reply: {line[:80]!r}")


class Message(NamedTuple):
    """A message published on a channel this connection is subscribed to."""

    channel: bytes
    data: bytes


@dataclass
class RedisClient:
    """One connection to a Redis server.

    ``execute()`` sends one command and returns its reply, raising
    :class:`RedisError` for an error reply. ``pipeline()`` sends many commands
    and then reads all their replies: one round trip instead of one per
    command. ``send()`` and ``read_reply()`` are the two halves, for callers
    who want to handle replies as they arrive.

    Once a reply has been cut short (the connection failed, or a read was
    cancelled in the middle of a reply) the connection is closed and every
    further call raises ``ConnectionError``: the replies that follow could
    not be matched with their commands any more.
    """

    reader: portastreams.StreamReader
    writer: portastreams.StreamWriter
    broken: bool = False

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = 6379) -> RedisClient:
        """Connect over TCP."""
        return cls(*await portastreams.open_connection(host, port))

    @classmethod
    async def connect_unix(cls, path: str) -> RedisClient:
        """Connect over a Unix socket (Redis's ``unixsocket`` setting)."""
        return cls(*await portastreams.open_unix_connection(path))

    def send(self, *args: Arg) -> None:
        """Queue one command; it is sent in the background, in order."""
        self._check_usable()
        self.writer.write(encode_command(*args))

    async def read_reply(self) -> Reply:
        """Read the next reply (an error reply is returned, not raised)."""
        self._check_usable()
        line = await self.reader.readline()  # cancelled here: nothing consumed
        try:
            return await finish_reply(line, self.reader)
        except BaseException:
            # A reply cut short: what follows is out of step with the commands.
            self.broken = True
            self.writer.close()
            raise

    async def execute(self, *args: Arg) -> Reply:
        """Send one command and return its reply; raise :class:`RedisError` for an error."""
        self.send(*args)
        await self.writer.drain()
        reply = await self.read_reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    async def pipeline(self, commands: Iterable[Sequence[Arg]]) -> list[Reply]:
        """Send every command, then read every reply, in order.

        Error replies are returned in place, as :class:`RedisError` objects,
        so that one failed command does not hide the others' results.
        ``write()`` never blocks and portastreams sends in the background, so
        the replies are read while the later commands are still going out.
        """
        count = 0
        for command in commands:
            self.send(*command)
            count += 1
        return [await self.read_reply() for _ in range(count)]

    async def subscribe(self, *channels: bytes | str) -> None:
        """Subscribe to ``channels``; from now on this connection only receives messages."""
        self.send("SUBSCRIBE", *channels)
        for channel in channels:
            reply = await self.read_reply()
            name = channel if isinstance(channel, bytes) else channel.encode()
            if not (isinstance(reply, list) and reply[:2] == [b"subscribe", name]):
                raise ProtocolError(f"unexpected reply to SUBSCRIBE: {reply!r}")

    async def next_message(self) -> Message:
        """Wait for the next message on a subscribed channel."""
        while True:
            reply = await self.read_reply()
            if isinstance(reply, RedisError):
                raise reply
            if (
                isinstance(reply, list)
                and len(reply) == 3
                and reply[0] == b"message"
                and isinstance(reply[1], bytes)
                and isinstance(reply[2], bytes)
            ):
                return Message(reply[1], reply[2])
            # Anything else (an unsubscribe confirmation, a PONG) is not a message.

    async def close(self) -> None:
        """Close the connection (pending replies are dropped)."""
        self.writer.close()
        await self.writer.wait_closed()

    async def __aenter__(self) -> RedisClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_usable(self) -> None:
        if self.broken:
            raise ConnectionError("a reply was cut short: this connection is closed")


# -- the command line -----------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """Where the server listens: a Unix socket path, or a host and a port."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix: str | None = None

    async def connect(self) -> RedisClient:
        if self.unix is not None:
            return await RedisClient.connect_unix(self.unix)
        return await RedisClient.connect(self.host, self.port)


async def tour(address: Address) -> None:
    """PING, SET/GET, a pipeline, an error reply and pub/sub, printing what happened."""
    prefix = f"portastreams-tour:{os.getpid()}"
    async with await address.connect() as client:
        print(f"PING: {await client.execute('PING')!r}")

        value = os.urandom(3 * 2**20)
        await client.execute("SET", f"{prefix}:blob", value)
        same = await client.execute("GET", f"{prefix}:blob") == value
        print(
            f"SET/GET: {len(value)} random bytes, {'the same' if same else 'DIFFERENT'}"
        )

        replies = await client.pipeline(("INCR", f"{prefix}:n") for _ in range(10_000))
        in_order = replies == list(range(1, 10_001))
        print(f"pipeline: 10000 INCR, replies {'1 to 10000' if in_order else replies}")

        try:
            await client.execute("LPUSH", f"{prefix}:blob", "x")
        except RedisError as error:
            print(f"error reply: {error.prefix}")

        channel = f"{prefix}:news"
        async with await address.connect() as subscriber:
            await subscriber.subscribe(channel)
            receivers = await client.execute("PUBLISH", channel, b"hello\r\nworld")
            message = await subscriber.next_message()
            print(f"pub/sub: {receivers!r} receiver, got {message.data!r}")

        await client.execute("DEL", f"{prefix}:blob", f"{prefix}:n")


async def main(address: Address, command: Sequence[str]) -> int:
    """Run ``command`` and print its reply (exit status 1 for an error reply), or the tour."""
    if not command:
        await tour(address)
        return 0
    async with await address.connect() as client:
        try:
            reply = await client.execute(*command)
        except RedisError as error:
            print(f"(error) {error}", file=sys.stderr)
            return 1
    print(repr(reply))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--unix", metavar="PATH", help="connect to a Unix socket")
    parser.add_argument("command", nargs="*", help="a command and its arguments")
    args = parser.parse_args()

    backend, options = BACKENDS[args.backend]
    address = Address(args.host, args.port, args.unix)
    sys.exit(
        anyio.run(main, address, args.command, backend=backend, backend_options=options)
    )
