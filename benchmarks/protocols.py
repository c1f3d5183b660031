"""What the benchmark servers answer: a tiny RESP (Redis) store and a fixed HTTP reply.

Shared by every server contender, so that the only thing that differs between
them is the stream implementation: the streams-API handler
(:mod:`._serve_streams_api`) and the hand-written trio handler
(:mod:`._serve_trio_buffer`) parse the bytes their own way but compute every
reply here.

RESP: ``PING`` (inline and multibulk), ``SET key value``, ``GET key`` and the
``CONFIG GET name`` that ``redis-benchmark`` asks before it starts (answered
with an empty value). Anything else is an error reply. HTTP/1.1: every request
gets the same ``200 OK`` with a 13-byte body, keep-alive unless the request
says ``Connection: close`` (or is HTTP/1.0 without ``keep-alive``).

:data:`COUNTS` counts the requests a server process handled, by kind; the
harness reads it (see :mod:`.server`) to check that the load generator's
every request was served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = [
    "COUNTS",
    "HTTP_BODY",
    "HTTP_RESPONSE",
    "http_request",
    "resp_reply",
]

#: Requests handled by this process, by kind (the keys never change, so
#: another thread may read them at any time).
COUNTS: Final[dict[str, int]] = dict.fromkeys(
    ("PING", "SET", "GET", "CONFIG", "ERROR", "HTTP"), 0
)

#: The RESP store, shared by every connection of a server process.
STORE: Final[dict[bytes, bytes]] = {}

PONG: Final = b"+PONG\r\n"
OK: Final = b"+OK\r\n"
NIL: Final = b"$-1\r\n"

HTTP_BODY: Final = b"Hello, World!"
HTTP_RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n" % len(HTTP_BODY)
) + HTTP_BODY


def bulk(value: bytes | bytearray) -> bytes:
    """``value`` as a RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def resp_reply(args: Sequence[bytes | bytearray]) -> bytes:
    """The reply to one RESP command (its arguments, the command name first)."""
    command = bytes(args[0]).upper() if args else b""
    if command == b"PING" and len(args) <= 2:
        COUNTS["PING"] += 1
        return PONG if len(args) == 1 else bulk(args[1])
    if command == b"GET" and len(args) == 2:
        COUNTS["GET"] += 1
        value = STORE.get(bytes(args[1]))
        return NIL if value is None else bulk(value)
    if command == b"SET" and len(args) == 3:
        COUNTS["SET"] += 1
        STORE[bytes(args[1])] = bytes(args[2])
        return OK
    if command == b"CONFIG" and len(args) == 3 and args[1].upper() == b"GET":
        # redis-benchmark asks for "save" and "appendonly" before it starts.
        COUNTS["CONFIG"] += 1
        return b"*2\r\n" + bulk(args[2]) + bulk(b"")
    COUNTS["ERROR"] += 1
    name = command.decode("ascii", "replace")
    return b"-ERR unknown command or wrong number of arguments for '%s'\r\n" % (
        name.encode()
    )


def http_request(head: bytes | bytearray) -> tuple[int, bool]:
    """``(body length, keep-alive)`` of a request whose head (up to ``\\r\\n\\r\\n``) is ``head``.

    Counts the request. Raises ``ValueError`` for a malformed request line.
    """
    COUNTS["HTTP"] += 1
    lines = bytes(head).split(b"\r\n")
    method, _target, version = lines[0].split(b" ", 2)
    if not method or not version.startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {lines[0]!r}")
    length = 0
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep_alive = value.strip().lower() == b"keep-alive"
    return length, keep_alive
