"""Listening sockets, bound as asyncio binds them, and the accept loop.

Binding follows ``BaseEventLoop.create_server`` / ``create_unix_server``:
``host`` may be a list (duplicates resolve to one socket), ``port`` may be a
string, ``SO_REUSEADDR`` is on by default on POSIX, IPv6 sockets are
``IPV6_V6ONLY``, and bind errors name the address.

The accept loop is the same on every backend: wait until a listening socket
is readable, then accept what is queued (up to ``backlog`` at a time, as
asyncio). Running out of file descriptors or memory is logged once per burst
and retried after a pause, as asyncio and trio do; the server keeps serving.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import sys
from collections.abc import Callable, Iterable
from typing import Any, Final

import anyio

__all__ = [
    "ACCEPT_RETRY_DELAY",
    "accept_connections",
    "bind_tcp_sockets",
    "bind_unix_socket",
    "set_nodelay",
]

logger = logging.getLogger("portastreams")

#: How long to pause accepting after EMFILE and friends (trio's figure).
ACCEPT_RETRY_DELAY: Final = 0.1

#: Accept errors that mean "out of resources for now": back off and retry.
RESOURCE_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
#: Accept errors that concern one connection that went away: just go on.
CONNECTION_ERRNOS: Final = frozenset(
    {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET}
)


async def bind_tcp_sockets(
    host: str | Iterable[str] | None,
    port: int | str | None,
    *,
    family: int,
    flags: int,
    backlog: int,
    reuse_address: bool | None,
    reuse_port: bool | None,
) -> list[socket.socket]:
    """Bind and listen on every address ``host``/``port`` resolve to."""
    if host == "" or host is None:
        hosts: list[str | None] = [None]
    elif isinstance(host, str):
        hosts = [host]
    else:
        hosts = list(host)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    infos: set[tuple[int, int, int, Any]] = set()
    for one_host in hosts:
        resolved = await anyio.getaddrinfo(
            one_host,
            port or 0,
            family=family,
            type=socket.SOCK_STREAM,
            flags=flags,
        )
        if not resolved:
            raise OSError(f"getaddrinfo({one_host!r}) returned empty list")
        for af, socktype, proto, _name, address in resolved:
            infos.add((int(af), int(socktype), proto, address))
    if reuse_address is None:
        reuse_address = os.name == "posix" and sys.platform != "cygwin"
    sockets: list[socket.socket] = []
    completed = False
    try:
        for family_number, kind, proto, address in sorted(infos, key=lambda i: i[0]):
            af = socket.AddressFamily(family_number)
            try:
                sock = socket.socket(af, kind, proto)
            except OSError:
                continue  # a family this host does not support
            sockets.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, True)
            if af == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
            try:
                sock.bind(address)
            except OSError as err:
                # asyncio's message, which changed in Python 3.13.
                reason = err if sys.version_info >= (3, 13) else err.strerror
                message = (
                    f"error while attempting to bind on address {address!r}: "
                    f"{str(reason).lower()}"
                )
                if err.errno == errno.EADDRNOTAVAIL:
                    sockets.pop()
                    sock.close()
                    continue
                raise OSError(err.errno, message) from None
            sock.listen(backlog)
            sock.setblocking(False)
        if not sockets:
            raise OSError(
                f"could not bind on any address out of {[i[3] for i in infos]!r}"
            )
        completed = True
    finally:
        if not completed:
            for sock in sockets:
                sock.close()
    return sockets


def refuse_non_socket(path: str) -> None:
    """Remove a stale socket file at ``path``; refuse to replace anything else."""
    if path.startswith("\0"):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(
            f"{path!r} exists and is not a socket; refusing to replace it"
        )
    os.remove(path)


def bind_unix_socket(path: str, backlog: int) -> socket.socket:
    """Bind and listen on a Unix socket at ``path`` (a stale socket is replaced)."""
    refuse_non_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                errno.EADDRINUSE, f"Address {path!r} is already in use"
            ) from None
        raise
    except BaseException:
        sock.close()
        raise
    return sock


async def accept_connections(
    sock: socket.socket,
    backlog: int,
    handle: Callable[[socket.socket], None],
) -> None:
    """Accept connections on ``sock`` and pass each to ``handle``, until it closes.

    Returns once the socket is closed (``anyio.notify_closing`` wakes the
    wait). Resource exhaustion is logged at ERROR once per burst, then the
    loop sleeps :data:`ACCEPT_RETRY_DELAY` and tries again; errors about one
    aborted connection are ignored, as asyncio does.
    """
    in_burst = False
    while True:
        if sock.fileno() == -1:
            return  # closed, perhaps before this loop even started
        try:
            await anyio.wait_readable(sock)
        except (anyio.ClosedResourceError, OSError, ValueError):
            return
        for _ in range(backlog):
            try:
                connection, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if sock.fileno() == -1:
                    return
                if exc.errno in CONNECTION_ERRNOS:
                    continue
                if not in_burst:
                    in_burst = True
                    level = logging.ERROR
                else:
                    level = logging.DEBUG
                logger.log(
                    level,
                    "socket.accept() failed on %s: %s; retrying in %s s",
                    _name(sock),
                    exc,
                    ACCEPT_RETRY_DELAY,
                )
                await anyio.sleep(ACCEPT_RETRY_DELAY)
                break
            if in_burst:
                in_burst = False
                logger.info("accepting connections again on %s", _name(sock))
            handle(connection)


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on a TCP socket, as asyncio does on every one.

    Replies written one by one must not wait for the peer's delayed ACK.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == (
        socket.SOCK_STREAM
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _name(sock: socket.socket) -> str:
    try:
        return repr(sock.getsockname())
    except OSError:
        return "a closed socket"
