"""The harness's own client for the benchmark servers: blocking stdlib sockets.

It never generates load (the C load generators do); it checks, before and
after the load, that a server answers exactly what :mod:`.protocols` says --
including that every ``GET`` of ``redis-benchmark`` found what its ``SET``
stored -- and it holds idle connections open to measure a server's memory per
connection. Any difference raises :class:`~._check.Mismatch`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Final

from ._check import Mismatch, expect
from .protocols import HTTP_RESPONSE

HOST: Final = "127.0.0.1"
#: Seconds any single reply may take.
TIMEOUT: Final = 30.0
#: The key every SET and GET of redis-benchmark uses when it runs without ``-r``.
BENCHMARK_KEY: Final = b"key:__rand_int__"
#: redis-benchmark's default value size (``-d``).
BENCHMARK_VALUE_SIZE: Final = 3


def benchmark_values(size: int = BENCHMARK_VALUE_SIZE) -> set[bytes]:
    """The values redis-benchmark's SET may have written (``-d size``).

    redis-benchmark 7 fills the value from a fixed linear congruential
    generator (seed 1234, so every run writes the same bytes); older versions
    fill it with ``x``.
    """
    state = 1234
    generated = bytearray()
    for _ in range(size):
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        generated.append(ord("0") + ((state >> 16) & 63))
    return {bytes(generated), b"x" * size}


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, or what came before EOF."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def exchange(sock: socket.socket, request: bytes, expected: bytes, what: str) -> None:
    """Send ``request``; the reply must be exactly ``expected``."""
    sock.sendall(request)
    reply = receive_exactly(sock, len(expected))
    expect(reply == expected, f"{what}: expected {expected!r}, got {reply!r}")


def expect_closed(sock: socket.socket, what: str) -> None:
    """The server must close the connection and send nothing more."""
    rest = sock.recv(65536)
    expect(rest == b"", f"{what}: expected the server to close, got {rest!r}")


def command(*args: bytes) -> bytes:
    """A RESP multibulk command."""
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args
    )


def check_resp(port: int, timeout: float = TIMEOUT) -> None:
    """Every command the RESP server supports, inline and multibulk, pipelined."""
    value = b"value with \r\n inside and \x00 bytes"
    with connect(port, timeout) as sock:
        exchange(sock, b"PING\r\n", b"+PONG\r\n", "inline PING")
        exchange(sock, command(b"PING"), b"+PONG\r\n", "multibulk PING")
        exchange(sock, command(b"PING", b"hi"), b"$2\r\nhi\r\n", "PING with a message")
        exchange(sock, command(b"GET", b"check:missing"), b"$-1\r\n", "GET of no key")
        exchange(sock, command(b"SET", b"check:key", value), b"+OK\r\n", "SET")
        exchange(
            sock,
            command(b"GET", b"check:key"),
            b"$%d\r\n%s\r\n" % (len(value), value),
            "GET after SET",
        )
        pipelined = command(b"SET", b"check:p", b"1") + b"PING\r\n"
        pipelined += command(b"GET", b"check:p")
        exchange(sock, pipelined, b"+OK\r\n+PONG\r\n$1\r\n1\r\n", "pipelined commands")
        sock.shutdown(socket.SHUT_WR)
        expect_closed(sock, "RESP after the client's EOF")


def check_resp_benchmark_key(port: int, timeout: float = TIMEOUT) -> None:
    """After redis-benchmark's SET and GET tests: the key holds what SET wrote."""
    with connect(port, timeout) as sock, sock.makefile("rb") as replies:
        sock.sendall(command(b"GET", BENCHMARK_KEY))
        header = replies.readline()
        value = None
        if header.startswith(b"$") and header.endswith(b"\r\n"):
            size = int(header[1:])
            if size >= 0:
                value = replies.read(size + 2)[:-2]
    candidates = benchmark_values(BENCHMARK_VALUE_SIZE)
    expect(
        value in candidates,
        f"GET {BENCHMARK_KEY!r} after redis-benchmark's SET: got {header!r} "
        f"{value!r}, expected one of {sorted(candidates)!r}",
    )


def http_request(
    target: bytes = b"/", *, body: bytes = b"", close: bool = False
) -> bytes:
    head = [b"%s %s HTTP/1.1" % (b"POST" if body else b"GET", target), b"Host: check"]
    if body:
        head.append(b"Content-Length: %d" % len(body))
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def check_http(port: int, timeout: float = TIMEOUT) -> None:
    """Keep-alive, pipelined requests, a request body, and ``Connection: close``.

    ``TimeoutError`` if the server keeps a reply (or the close) back for
    ``timeout`` seconds.
    """
    with connect(port, timeout) as sock:
        exchange(sock, http_request(), HTTP_RESPONSE, "GET")
        exchange(
            sock,
            http_request(b"/a") + http_request(b"/b"),
            HTTP_RESPONSE * 2,
            "two pipelined GETs",
        )
        exchange(
            sock, http_request(body=b"x" * 5000), HTTP_RESPONSE, "POST with a body"
        )
        exchange(sock, http_request(close=True), HTTP_RESPONSE, "Connection: close")
        expect_closed(sock, "HTTP after Connection: close")


CHECKS: Final[dict[str, Callable[[int, float], None]]] = {
    "resp": check_resp,
    "http": check_http,
}

#: One request and its reply, that each idle connection exchanges once: the
#: server has accepted it and its handler is waiting for the next request.
PROBES: Final[dict[str, tuple[bytes, bytes]]] = {
    "resp": (b"PING\r\n", b"+PONG\r\n"),
    "http": (http_request(), HTTP_RESPONSE),
}


@contextlib.contextmanager
def idle_connections(port: int, protocol: str, count: int) -> Iterator[None]:
    """``count`` connections, each served once, then idle; closed on exit.

    The connections are opened one after the other, so the listen backlog
    never overflows. On exit each one half-closes and waits until the server
    has closed its side: the handlers have finished.
    """
    request, reply = PROBES[protocol]
    sockets: list[socket.socket] = []
    try:
        for index in range(count):
            sock = connect(port)
            sockets.append(sock)
            exchange(sock, request, reply, f"idle connection {index}")
        yield
        _close_and_wait(sockets)
    finally:
        for sock in sockets:
            sock.close()


def _close_and_wait(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + TIMEOUT
    for sock in sockets:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            expect_closed(sock, "idle connection after the client's EOF")
        except TimeoutError as exc:
            raise Mismatch("the server did not close an idle connection") from exc
