"""A minimal NATS client on portastreams: CONNECT, PUB, SUB, MSG, PING/PONG.

Usage:
  python examples/nats_client.py --backend trio [--host 127.0.0.1] [--port 4222]
         pub SUBJECT MESSAGE      publish MESSAGE on SUBJECT
         sub SUBJECT [COUNT]      print COUNT messages (default 1) published on SUBJECT
         request SUBJECT MESSAGE  publish with a reply subject, print the first reply
         reply SUBJECT [COUNT]    answer COUNT requests on SUBJECT with their payload reversed

NATS (https://docs.nats.io/reference/reference-protocols/nats-protocol) is a
line protocol like Redis's: each operation is one CRLF-terminated control
line, and the two that carry a payload (``PUB`` from the client, ``MSG`` from
the server) give its length in the control line. So ``readline()`` reads
control lines and ``readexactly()`` payloads, which may contain any byte.

Unlike Redis, the server speaks on its own: it delivers messages whenever
they are published and sends ``PING`` to check that the client is alive. So
one task reads everything the server sends and dispatches it -- messages to
their subscription's queue, ``PONG`` to whoever waits in ``flush()``, a
``PONG`` back for every ``PING`` -- while the program publishes, subscribes
and waits for messages. :meth:`NatsClient.connect` runs that task in a task
group for as long as the connection is in use.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import portastreams

# anyio.run() arguments for each backend name.
BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}

CRLF = b"\r\n"


class NatsError(Exception):
    """An ``-ERR`` from the server (``'Authorization Violation'``, ...).

    Most errors make the server close the connection.
    """


@dataclass(frozen=True)
class Msg:
    """A message delivered on a subscription."""

    subject: str
    data: bytes
    reply: str | None = None


@dataclass
class Subscription:
    """Messages on ``subject`` (a wildcard like ``orders.*`` is allowed), in order."""

    subject: str
    sid: int
    _messages: MemoryObjectReceiveStream[Msg]
    _client: NatsClient

    async def next_msg(self) -> Msg:
        """Wait for the next message; ``ConnectionError`` once the connection is gone.

        Safe to cancel (to time out): the message stays queued for the next call.
        """
        try:
            return await self._messages.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            error = self._client.connection_error()
            raise error from error.__cause__

    def unsubscribe(self) -> None:
        """Stop the messages; those already queued can still be read."""
        self._client.send(b"UNSUB %d" % self.sid)
        self._client.drop_subscription(self.sid)


@dataclass
class NatsClient:
    """One connection to a NATS server; made by :meth:`connect`.

    ``publish()``, ``subscribe()`` and ``unsubscribe()`` only queue their
    operation (``write()`` never blocks); ``flush()`` waits until the server
    has processed everything sent so far (a ``PING``/``PONG`` round trip).
    """

    reader: portastreams.StreamReader
    writer: portastreams.StreamWriter
    #: The server's ``INFO``: ``server_id``, ``version``, ``max_payload``, ...
    info: dict[str, Any]
    #: How many of the server's ``PING`` this client answered.
    pings_answered: int = 0
    #: The last ``-ERR`` the server sent after the connection was made.
    server_error: NatsError | None = None
    _sids: count[int] = field(default_factory=lambda: count(1))
    _subscriptions: dict[int, MemoryObjectSendStream[Msg]] = field(default_factory=dict)
    _queues: dict[int, MemoryObjectReceiveStream[Msg]] = field(default_factory=dict)
    _pong_waiters: deque[anyio.Event] = field(default_factory=deque)
    _error: BaseException | None = None

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, host: str = "127.0.0.1", port: int = 4222, *, name: str = "portastreams"
    ) -> AsyncIterator[NatsClient]:
        """Connect, say ``CONNECT``, and keep the connection served while in use.

        Raises :class:`NatsError` if the server refuses the connection.
        """
        reader, writer = await portastreams.open_connection(host, port)
        try:
            client = cls(reader, writer, await cls._read_info(reader))
            options = {"verbose": False, "pedantic": False, "name": name}
            options |= {"lang": "python", "version": "0.1", "protocol": 1}
            client.send(b"CONNECT " + json.dumps(options).encode())
            client.send(b"PING")
            # The server answers the PING once CONNECT is accepted, or sends -ERR.
            while (line := await reader.readline()) != b"PONG\r\n":
                if line.startswith(b"-ERR"):
                    raise NatsError(_error_text(line))
                if not line.startswith(b"INFO "):
                    raise ConnectionError(f"unexpected answer to CONNECT: {line!r}")
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(client._serve)
                try:
                    yield client
                finally:
                    task_group.cancel_scope.cancel()
                    client._close_subscriptions()
                    for queue in client._queues.values():
                        queue.close()
        finally:
            writer.close()
            await writer.wait_closed()

    @staticmethod
    async def _read_info(reader: portastreams.StreamReader) -> dict[str, Any]:
        line = await reader.readline()
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"not a NATS server: {line[:80]!r}")
        info: dict[str, Any] = json.loads(line[5:])
        return info

    # -- what a program calls --------------------------------------------

    def publish(self, subject: str, data: bytes, *, reply: str | None = None) -> None:
        """Publish ``data`` (any bytes, up to the server's ``max_payload``)."""
        if len(data) > self.info.get("max_payload", math.inf):
            raise ValueError(
                f"{len(data)} bytes is over the server's max_payload "
                f"({self.info['max_payload']})"
            )
        head = (
            f"PUB {subject} {reply} {len(data)}"
            if reply
            else f"PUB {subject} {len(data)}"
        )
        self.send(head.encode(), data)

    def subscribe(self, subject: str, queue: str | None = None) -> Subscription:
        """Subscribe (in a queue group if ``queue``: one member gets each message)."""
        sid = next(self._sids)
        send, receive = anyio.create_memory_object_stream[Msg](math.inf)
        self._subscriptions[sid] = send
        self._queues[sid] = receive
        self.send(f"SUB {subject} {queue} {sid}" if queue else f"SUB {subject} {sid}")
        return Subscription(subject, sid, receive, self)

    async def flush(self) -> None:
        """Wait until the server has processed everything sent before (PING, PONG)."""
        self.send(b"PING")
        pong = anyio.Event()
        self._pong_waiters.append(pong)  # PONGs come back in the order of the PINGs
        await pong.wait()
        if self._error is not None:
            raise self.connection_error()

    async def request(self, subject: str, data: bytes) -> Msg:
        """Publish ``data`` with a reply subject and return the first reply."""
        inbox = f"_INBOX.{id(self):x}.{next(self._sids)}"
        replies = self.subscribe(inbox)
        self.send(b"UNSUB %d 1" % replies.sid)  # the server stops after one reply
        self.publish(subject, data, reply=inbox)
        try:
            return await replies.next_msg()
        finally:
            self.drop_subscription(replies.sid)
            self._queues.pop(replies.sid).close()

    # -- the connection --------------------------------------------------

    def send(self, line: bytes | str, payload: bytes | None = None) -> None:
        """Queue one control line (and its payload); raise if the connection is gone."""
        if self._error is not None:
            raise self.connection_error()
        data = line.encode() if isinstance(line, str) else line
        if payload is None:
            self.writer.write(data + CRLF)
        else:
            self.writer.writelines([data, CRLF, payload, CRLF])

    def drop_subscription(self, sid: int) -> None:
        send = self._subscriptions.pop(sid, None)
        if send is not None:
            send.close()

    def connection_error(self) -> ConnectionError:
        """The error to raise now that the connection is gone.

        Its cause is the server's last ``-ERR`` if there was one, else what
        ended the connection (an ``IncompleteReadError`` at EOF, a reset).
        """
        error = ConnectionError(
            f"the connection to the NATS server is lost: {self._error!r}"
        )
        error.__cause__ = self._error
        return error

    async def _serve(self) -> None:
        """Read and dispatch everything the server sends, until the connection ends."""
        try:
            while True:
                line = await self.reader.readline()
                if not line.endswith(CRLF):
                    raise portastreams.IncompleteReadError(line, None)
                await self._dispatch(line)
        except (OSError, EOFError, ValueError) as exc:
            self._error = self.server_error or exc
            self._close_subscriptions()

    async def _dispatch(self, line: bytes) -> None:
        operation = line.split(maxsplit=1)[0].upper()
        if operation == b"MSG":
            await self._deliver(line)
        elif operation == b"PING":
            self.send(b"PONG")
            self.pings_answered += 1
        elif operation == b"PONG":
            if self._pong_waiters:
                self._pong_waiters.popleft().set()
        elif operation == b"INFO":
            self.info = json.loads(line[5:])
        elif operation == b"-ERR":
            # Most errors end the connection: the server closes it next.
            self.server_error = NatsError(_error_text(line))
        elif operation != b"+OK":
            raise ValueError(f"unexpected line from the server: {line[:80]!r}")

    async def _deliver(self, line: bytes) -> None:
        # MSG <subject> <sid> [reply-to] <#bytes>
        fields = line.split()
        if len(fields) not in (4, 5):
            raise ValueError(f"malformed MSG line: {line!r}")
        subject, sid = fields[1].decode(), int(fields[2])
        reply = fields[3].decode() if len(fields) == 5 else None
        data = await self.reader.readexactly(int(fields[-1]))
        if await self.reader.readexactly(2) != CRLF:
            raise ValueError("a message payload does not end with CRLF")
        send = self._subscriptions.get(sid)
        if send is not None:  # else: unsubscribed while the message was on its way
            send.send_nowait(Msg(subject, data, reply))

    def _close_subscriptions(self) -> None:
        for sid in list(self._subscriptions):
            self.drop_subscription(sid)
        for pong in self._pong_waiters:
            pong.set()
        self._pong_waiters.clear()


def _error_text(line: bytes) -> str:
    # -ERR 'Authorization Violation'
    return line[4:].strip().strip(b"'").decode(errors="replace")


# -- the command line -----------------------------------------------------------


async def pub(client: NatsClient, subject: str, message: str) -> None:
    client.publish(subject, message.encode())
    await client.flush()
    print(f"published {len(message.encode())} bytes on {subject}")


async def sub(client: NatsClient, subject: str, how_many: str = "1") -> None:
    subscription = client.subscribe(subject)
    await client.flush()
    print(f"subscribed to {subject}", flush=True)
    for _ in range(int(how_many)):
        msg = await subscription.next_msg()
        print(f"[{msg.subject}] {msg.data.decode(errors='replace')}", flush=True)


async def request(client: NatsClient, subject: str, message: str) -> None:
    reply = await client.request(subject, message.encode())
    print(reply.data.decode(errors="replace"))


async def reply(client: NatsClient, subject: str, how_many: str = "1") -> None:
    subscription = client.subscribe(subject)
    await client.flush()
    print(f"answering on {subject}", flush=True)
    for _ in range(int(how_many)):
        msg = await subscription.next_msg()
        if msg.reply is not None:
            client.publish(msg.reply, msg.data[::-1])
    await client.flush()


COMMANDS: dict[str, Callable[..., Awaitable[None]]] = {
    "pub": pub,
    "sub": sub,
    "request": request,
    "reply": reply,
}


async def main(host: str, port: int, command: str, args: Sequence[str]) -> None:
    async with NatsClient.connect(
        host, port, name=f"nats_client.py {command}"
    ) as client:
        await COMMANDS[command](client, *args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[3:7]),
    )
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4222)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("args", nargs="+", metavar="ARG")
    arguments = parser.parse_args()

    backend, options = BACKENDS[arguments.backend]
    try:
        anyio.run(
            main,
            arguments.host,
            arguments.port,
            arguments.command,
            arguments.args,
            backend=backend,
            backend_options=options,
        )
    except NatsError as error:
        print(f"-ERR {error}", file=sys.stderr)
        sys.exit(1)
