"""Servers: ``start_server``, ``start_unix_server`` and the ``Server`` they return.

One serving model on every backend, structured like trio's:

* ``start_server`` binds the listening sockets and returns. The kernel
  queues incoming connections from then on, but nothing accepts them yet.
* Connections are accepted, and their handlers run, while the server is
  inside ``async with server:`` or ``await server.serve_forever()``. Both own
  a task group; every handler runs in a task owned by that group (on
  asyncio a plain task under the group's supervisor, see
  :mod:`portastreams._handler_tasks`).
* When a handler returns or raises, its writer is closed (flushing what was
  written). A handler's exception is logged to the ``portastreams`` logger
  and never disturbs the server or other connections.
* ``close()`` stops accepting; ``wait_closed()`` waits until the listeners
  are closed and every running handler has finished. Leaving ``async with``
  does both.
"""

from __future__ import annotations

import inspect
import logging
import os
import select
import socket
import ssl as ssl_module
import stat
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._asyncio_native import accept_native_connection, can_open_natively
from ._backend import running_backend, spawn_detached
from ._connections import check_keywords, check_limit, open_pair
from ._handler_tasks import HandlerTasks
from ._listeners import (
    accept_connections,
    bind_tcp_sockets,
    bind_unix_socket,
    set_nodelay,
)
from ._reader import DEFAULT_LIMIT, StreamReader
from ._tls import handshake_timeout
from ._writer import StreamWriter

__all__ = ["ClientConnectedCallback", "Server", "start_server", "start_unix_server"]

logger = logging.getLogger("portastreams")

ClientConnectedCallback = Callable[[StreamReader, StreamWriter], Awaitable[None] | None]

#: How long a connection may wait on a server nobody serves before a warning.
NOT_SERVING_WARNING_DELAY: Final = 1.0
#: How long a graceful ``close_clients()`` waits for a peer to finish sending.
LINGER_TIMEOUT: Final = 5.0


class Server:
    """A listening server, as returned by :func:`start_server`.

    Connections are accepted, and handlers run, only while the server is
    served: inside ``async with server:`` (the body runs while the server
    serves; leaving closes it and waits for the handlers) or inside
    ``await server.serve_forever()`` (also as
    ``await task_group.start(server.serve_forever)``). Clients that connect
    before that wait in the kernel's queue; if one waits for long on a server
    nobody serves, a warning on the ``portastreams`` logger says so.
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        client_connected_cb: ClientConnectedCallback,
        *,
        limit: int,
        backlog: int,
        ssl_context: ssl_module.SSLContext | None,
        ssl_handshake_timeout: float | None,
        start_serving: bool,
        unix_path: str | None = None,
    ) -> None:
        self._sockets: tuple[socket.socket, ...] = tuple(sockets)
        self._callback = client_connected_cb
        self._limit = limit
        self._backlog = backlog
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        handshake_timeout(ssl_handshake_timeout)  # validate
        self._start_serving_on_enter = start_serving
        self._unix_path = unix_path
        self._unix_stat = _socket_identity(unix_path)
        self._backend = running_backend()
        self._task_group: TaskGroup | None = None
        self._handler_tasks: HandlerTasks | None = None
        #: One cancel scope per accept loop (a scope is entered only once).
        self._accept_scopes: list[anyio.CancelScope] = []
        self._serving = False
        self._closed = False
        self._serve_forever_running = False
        self._connections: set[StreamWriter] = set()
        #: Connections the server itself closed or aborted: their handlers'
        #: connection errors are the server's doing, not the handler's.
        self._closed_by_server: set[StreamWriter] = set()
        self._handlers = 0
        self._close_event: anyio.Event | None = None
        self._idle_event: anyio.Event | None = None
        self._watchdog_scope: anyio.CancelScope | None = None
        if start_serving:
            self._start_watchdog()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty once the server is closed)."""
        return () if self._closed else self._sockets

    def is_serving(self) -> bool:
        """True while the server accepts connections."""
        return self._serving

    def get_loop(self) -> None:
        """asyncio's ``Server.get_loop()``: portastreams servers have no loop object."""
        raise NotImplementedError(
            "portastreams servers are not tied to an asyncio loop"
        )

    # -- serving -------------------------------------------------------------

    async def __aenter__(self) -> Server:
        if self._task_group is not None:
            raise RuntimeError("this server is already being served")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        if self._start_serving_on_enter:
            try:
                await self._start_accepting(task_group)
            except BaseException as exc:
                # Cancelled (or Ctrl+C) at the checkpoint: leave the task group
                # we entered, or the backend's cancel scope stack is corrupted.
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        self.close()
        task_group = self._task_group
        assert task_group is not None
        try:
            try:
                return await task_group.__aexit__(exc_type, exc_val, exc_tb)
            except BaseException as error:
                # Handlers and accept loops never raise, so a group holding
                # only the body's exception is that exception, wrapped by the
                # task group: raise it bare, as asyncio's Server does (and so
                # that ``except KeyboardInterrupt`` works on trio).
                members = getattr(error, "exceptions", None)
                if (
                    exc_val is None
                    or not isinstance(members, tuple)
                    or len(members) != 1
                    or members[0] is not exc_val
                ):
                    raise
        finally:
            self._task_group = None
            self._maybe_idle()
        raise exc_val  # outside the except block: keeps its own __context__

    async def start_serving(self) -> None:
        """Start accepting connections, inside ``async with server:``.

        Only needed with ``start_serving=False``; a no-op when already serving.
        """
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if self._task_group is None:
            raise RuntimeError(
                "start_serving() needs a running server: call it inside "
                "'async with server:' or use serve_forever()"
            )
        await self._start_accepting(self._task_group)

    async def serve_forever(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections until :meth:`close` is called or the task is cancelled.

        Returns (after the handlers finish) once the server is closed. With
        ``await task_group.start(server.serve_forever)`` it reports started
        once it accepts connections.
        """
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if self._serve_forever_running:
            raise RuntimeError(
                f"server {self!r} is already being awaited on serve_forever()"
            )
        self._serve_forever_running = True
        try:
            if self._task_group is not None:
                await self._start_accepting(self._task_group)
                task_status.started()
                await self._wait_for_close()
            else:
                async with self:
                    await self._start_accepting(self._task_group)  # type: ignore[arg-type]
                    task_status.started()
                    await self._wait_for_close()
        finally:
            self._serve_forever_running = False

    async def _wait_for_close(self) -> None:
        if self._closed:
            return
        if self._close_event is None:
            self._close_event = anyio.Event()
        await self._close_event.wait()

    async def _start_accepting(self, task_group: TaskGroup) -> None:
        if self._serving or self._closed:
            return
        self._stop_watchdog()
        self._serving = True

        handlers = self._handler_tasks = HandlerTasks(
            self._backend, task_group, lambda: self._closed
        )
        await handlers.open()

        def handle(connection: socket.socket) -> None:
            self._handlers += 1
            handlers.start(self._run_handler, connection)

        for sock in self._sockets:
            scope = anyio.CancelScope()
            self._accept_scopes.append(scope)
            task_group.start_soon(self._accept_loop, sock, handle, scope)
        await anyio.lowlevel.checkpoint()

    async def _accept_loop(
        self,
        sock: socket.socket,
        handle: Callable[[socket.socket], None],
        scope: anyio.CancelScope,
    ) -> None:
        with scope:
            await accept_connections(sock, self._backlog, handle)

    async def _open(
        self, connection: socket.socket
    ) -> tuple[StreamReader, StreamWriter]:
        """The reader and writer of an accepted socket (after the TLS handshake)."""
        if self._backend == "asyncio" and can_open_natively(
            tls=self._ssl_context is not None
        ):
            return await accept_native_connection(
                connection,
                limit=self._limit,
                ssl_context=self._ssl_context,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        stream: anyio.abc.SocketStream
        set_nodelay(connection)
        if connection.family == socket.AF_UNIX:
            stream = await anyio.abc.UNIXSocketStream.from_socket(connection)
        else:
            stream = await anyio.abc.SocketStream.from_socket(connection)
        return await open_pair(
            stream,
            self._limit,
            server_side=True,
            ssl_context=self._ssl_context,
            server_hostname=None,
            ssl_handshake_timeout=self._ssl_handshake_timeout,
            ssl_shutdown_timeout=None,
        )

    async def _run_handler(self, connection: socket.socket) -> None:
        writer: StreamWriter | None = None
        try:
            try:
                reader, writer = await self._open(connection)
            except Exception as exc:
                # A plain-text client, a bad certificate, a stalled handshake,
                # no memory for the connection: the client's problem, or a
                # passing one; never the server's end.
                connection.close()
                level = logging.ERROR if isinstance(exc, MemoryError) else logging.DEBUG
                logger.log(level, "connection setup (TLS handshake) failed: %r", exc)
                return
            self._connections.add(writer)
            result = self._callback(reader, writer)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self._log_handler_error(exc, writer)
        finally:
            if writer is not None:
                self._connections.discard(writer)
                self._closed_by_server.discard(writer)
                writer.close()
            self._handlers -= 1
            self._maybe_idle()

    def _log_handler_error(self, exc: Exception, writer: StreamWriter | None) -> None:
        """Log what a handler raised: the user's error, not the library's plumbing.

        A connection error after the server closed the connection itself is
        the server's doing (debug). A peer's reset or hang-up is one line at
        INFO, the traceback at DEBUG. Anything else is the handler's bug:
        ERROR with the traceback, as asyncio logs it.
        """
        if isinstance(exc, ConnectionError) and writer is not None:
            if writer in self._closed_by_server:
                logger.debug("handler ended by the server's close: %r", exc)
                return
            logger.info("connection from %s lost: %s", _peer(writer), _describe(exc))
            logger.debug("connection error in client_connected_cb", exc_info=exc)
            return
        logger.error("Unhandled exception in client_connected_cb", exc_info=exc)

    # -- the not-serving watchdog ----------------------------------------------

    def _start_watchdog(self) -> None:
        spawn_detached(
            self._backend, self._watch_for_waiting_clients, "portastreams watchdog"
        )

    def _stop_watchdog(self) -> None:
        if self._watchdog_scope is not None:
            self._watchdog_scope.cancel()

    async def _watch_for_waiting_clients(self) -> None:
        """Warn once if clients queue up while nobody serves the server."""
        with anyio.CancelScope() as scope:
            self._watchdog_scope = scope
            seen_waiting = False
            while not (self._serving or self._closed):
                await anyio.sleep(NOT_SERVING_WARNING_DELAY)
                if self._is_serving_or_closed():
                    break
                waiting = _has_pending_connection(self._sockets)
                if waiting and seen_waiting:
                    logger.warning(
                        "%r has connections waiting but is not accepting them: "
                        "serve it with 'async with server:' or "
                        "'await server.serve_forever()' (portastreams servers "
                        "accept connections only while served)",
                        self,
                    )
                    break
                seen_waiting = waiting
        self._watchdog_scope = None

    def _is_serving_or_closed(self) -> bool:
        return self._serving or self._closed

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting connections and close the listening sockets, now.

        A client connecting after ``close()`` returns is refused, as in
        asyncio. Running handlers continue; :meth:`wait_closed` waits for them.
        """
        if self._closed:
            return
        self._closed = True
        self._serving = False
        self._stop_watchdog()
        if self._close_event is not None:
            self._close_event.set()
        for scope in self._accept_scopes:
            scope.cancel()
        for sock in self._sockets:
            if sock.fileno() != -1:
                anyio.notify_closing(sock)
                sock.close()
        self._cleanup_unix_socket()
        if self._handler_tasks is not None:
            self._handler_tasks.server_closed()
        self._maybe_idle()

    def _cleanup_unix_socket(self) -> None:
        path = self._unix_path
        if path is None or self._unix_stat is None:
            return
        if _socket_identity(path) == self._unix_stat:
            os.unlink(path)

    def _maybe_idle(self) -> None:
        if self._idle_event is not None and self._closed and self._handlers == 0:
            self._idle_event.set()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every handler has finished.

        On an open server this waits for :meth:`close` first, as asyncio does.
        """
        await self._wait_for_close()
        if self._handlers == 0:
            await anyio.lowlevel.checkpoint()
            return
        if self._idle_event is None:
            self._idle_event = anyio.Event()
        self._maybe_idle()
        await self._idle_event.wait()

    def close_clients(self) -> None:
        """Close every live connection gracefully.

        What was written is sent, then writing is shut down, so well-behaved
        peers read EOF (not a reset); each connection closes once its peer
        has finished sending (or after a few seconds). Connection errors the
        handlers see because of this are not logged as handler failures.
        """
        for writer in list(self._connections):
            self._closed_by_server.add(writer)
            writer._close_gracefully(LINGER_TIMEOUT)

    def abort_clients(self) -> None:
        """Abort every live connection at once, dropping unsent data."""
        for writer in list(self._connections):
            self._closed_by_server.add(writer)
            writer.transport.abort()


def _peer(writer: StreamWriter) -> object:
    """The peer's address for a log line; the transport may be gone already."""
    try:
        return writer.get_extra_info("peername")
    except Exception:  # uvloop's closed transports fail instead of answering None
        return "a closed connection"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _has_pending_connection(sockets: Iterable[socket.socket]) -> bool:
    """True if a listening socket has a connection waiting to be accepted."""
    open_sockets = [sock for sock in sockets if sock.fileno() != -1]
    if not open_sockets:
        return False
    readable, _, _ = select.select(open_sockets, [], [], 0)
    return bool(readable)


def _socket_identity(path: str | None) -> tuple[int, int] | None:
    """``(device, inode)`` of the socket file at ``path``, or None if it is not one."""
    if path is None or path.startswith("\0"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


def _server_ssl_context(ssl: object) -> ssl_module.SSLContext | None:
    """``ssl`` checked as asyncio checks it, and, where asyncio starts a server
    that would fail every connection, refused at once (docs/porting.rst)."""
    if ssl is None:
        return None
    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")  # asyncio's
    raise TypeError(
        f"ssl argument must be an SSLContext or None, not {type(ssl).__name__}"
    )


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | Iterable[str] | None = None,
    port: int | str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    family: int = socket.AF_UNSPEC,
    flags: int = socket.AI_PASSIVE,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: ssl_module.SSLContext | None = None,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    start_serving: bool = True,
    ssl_handshake_timeout: float | None = None,
    **kwds: Any,
) -> Server:
    """Bind a TCP server and return its :class:`Server`; it accepts once served.

    The listening sockets are bound when this returns, but connections are
    accepted only inside ``async with server:`` or ``await
    server.serve_forever()`` (structured concurrency: the handlers run in
    tasks the server owns there). ``start_serving=False`` additionally waits
    for :meth:`Server.start_serving` inside the block.

    ``client_connected_cb(reader, writer)`` is called for each connection,
    as a plain function or a coroutine function; when it returns, the
    connection is closed. ``host`` may be a list; ``port`` may be a string.
    """
    check_keywords("start_server", kwds)
    check_limit(limit)
    context = _server_ssl_context(ssl)
    if ssl_handshake_timeout is not None and context is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    handshake_timeout(ssl_handshake_timeout)
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        sock.listen(backlog)
        sock.setblocking(False)
        sockets = [sock]
    else:
        sockets = await bind_tcp_sockets(
            host,
            port,
            family=family,
            flags=flags,
            backlog=backlog,
            reuse_address=reuse_address,
            reuse_port=reuse_port,
        )
    return Server(
        sockets,
        client_connected_cb,
        limit=limit,
        backlog=backlog,
        ssl_context=context,
        ssl_handshake_timeout=ssl_handshake_timeout,
        start_serving=start_serving,
    )


async def start_unix_server(
    client_connected_cb: ClientConnectedCallback,
    path: str | os.PathLike[str] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: ssl_module.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    start_serving: bool = True,
    cleanup_socket: bool = True,
    **kwds: Any,
) -> Server:
    """Bind a Unix domain socket server and return its :class:`Server`.

    As :func:`start_server`, it accepts connections once served. A stale
    socket file at ``path`` is replaced, as asyncio does; any other file
    there is an error. With ``cleanup_socket`` (the default) the socket file
    is removed when the server closes, if it is still the server's own.
    """
    check_keywords("start_unix_server", kwds)
    check_limit(limit)
    context = _server_ssl_context(ssl)
    if ssl_handshake_timeout is not None and context is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    handshake_timeout(ssl_handshake_timeout)
    unix_path: str | None = None
    if sock is not None:
        if path is not None:
            raise ValueError("path and sock can not be specified at the same time")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.listen(backlog)
        sock.setblocking(False)
        name = sock.getsockname()
        if isinstance(name, str) and name:
            unix_path = name
    else:
        if path is None:
            raise ValueError("path was not specified, and no sock specified")
        unix_path = os.fspath(path)
        sock = bind_unix_socket(unix_path, backlog)
    return Server(
        [sock],
        client_connected_cb,
        limit=limit,
        backlog=backlog,
        ssl_context=context,
        ssl_handshake_timeout=ssl_handshake_timeout,
        start_serving=start_serving,
        unix_path=unix_path if cleanup_socket else None,
    )
