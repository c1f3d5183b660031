"""Servers: ``start_server``, ``start_unix_server`` and the ``Server`` they return.

One serving model on every backend, structured like trio's:

* ``start_server`` binds the listening sockets and returns. The kernel
  queues incoming connections from then on, but nothing accepts them yet.
* Connections are accepted, and their handlers run, while the server is
  inside ``async with server:`` or ``await server.serve_forever()``. Both own
  a task group; every handler runs in a task of that group.
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
import socket
import ssl as ssl_module
import stat
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, cast

import anyio
from anyio.abc import (
    ByteStream,
    SocketAttribute,
    SocketListener,
    TaskGroup,
    TaskStatus,
)

from ._backend import running_backend, spawn_detached
from ._connections import check_keywords, check_limit, make_pair
from ._reader import DEFAULT_LIMIT, StreamReader
from ._tls import handshake_timeout, wrap_tls
from ._writer import StreamWriter

__all__ = ["ClientConnectedCallback", "Server", "start_server", "start_unix_server"]

logger = logging.getLogger("portastreams")

ClientConnectedCallback = Callable[[StreamReader, StreamWriter], Awaitable[None] | None]

#: How long to pause accepting after an error such as EMFILE.
ACCEPT_ERROR_PAUSE = 0.1


class Server:
    """A listening server, as returned by :func:`start_server`.

    Use it as an async context manager (the body runs while the server
    serves; leaving closes it and waits for the handlers) and/or call
    :meth:`serve_forever`, also as ``await task_group.start(server.serve_forever)``.
    """

    def __init__(
        self,
        listeners: Sequence[SocketListener],
        client_connected_cb: ClientConnectedCallback,
        *,
        limit: int,
        ssl_context: ssl_module.SSLContext | None,
        ssl_handshake_timeout: float | None,
        start_serving: bool,
        unix_path: str | None = None,
    ) -> None:
        self._listeners = list(listeners)
        self._sockets: tuple[socket.socket, ...] = tuple(
            listener.extra(SocketAttribute.raw_socket) for listener in listeners
        )
        self._callback = client_connected_cb
        self._limit = limit
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = handshake_timeout(ssl_handshake_timeout)
        self._start_serving_on_enter = start_serving
        self._unix_path = unix_path
        self._unix_stat = _socket_identity(unix_path)
        self._backend = running_backend()
        self._task_group: TaskGroup | None = None
        self._accept_scope: anyio.CancelScope | None = None
        self._serving = False
        self._closed = False
        self._listeners_closed = False
        self._closing_listeners: anyio.Event | None = None
        self._serve_forever_running = False
        self._connections: set[StreamWriter] = set()
        self._handlers = 0
        self._close_event: anyio.Event | None = None
        self._idle_event: anyio.Event | None = None

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
            with anyio.CancelScope(shield=True):
                await self._close_listeners()
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
        scope = self._accept_scope = anyio.CancelScope()
        self._serving = True
        for listener in self._listeners:
            task_group.start_soon(self._accept_loop, listener, task_group, scope)
        await anyio.lowlevel.checkpoint()

    async def _accept_loop(
        self, listener: SocketListener, task_group: TaskGroup, scope: anyio.CancelScope
    ) -> None:
        with scope:
            while True:
                try:
                    stream = await listener.accept()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except OSError as exc:
                    # EMFILE, ENOBUFS, ECONNABORTED...: the listener is fine.
                    logger.warning("error accepting a connection: %r", exc)
                    await anyio.sleep(ACCEPT_ERROR_PAUSE)
                    continue
                _pause_eager_reading(stream)
                self._handlers += 1
                task_group.start_soon(self._run_handler, stream)

    async def _run_handler(self, stream: ByteStream) -> None:
        writer: StreamWriter | None = None
        try:
            if self._ssl_context is not None:
                try:
                    stream = await wrap_tls(
                        stream,
                        server_side=True,
                        context=self._ssl_context,
                        hostname=None,
                        timeout=self._ssl_handshake_timeout,
                    )
                except Exception as exc:
                    # A plain-text client, a bad certificate, a stalled
                    # handshake: the client's problem, not the server's.
                    logger.debug("TLS handshake with a client failed: %r", exc)
                    return
            reader, writer = make_pair(stream, self._limit, server_side=True)
            self._connections.add(writer)
            result = self._callback(reader, writer)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("Unhandled exception in client_connected_cb")
        finally:
            if writer is not None:
                self._connections.discard(writer)
                writer.close()
            self._handlers -= 1
            self._maybe_idle()

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting connections and close the listening sockets.

        Running handlers continue; :meth:`wait_closed` waits for them.
        """
        if self._closed:
            return
        self._closed = True
        self._serving = False
        if self._close_event is not None:
            self._close_event.set()
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        # Close the listeners now (as asyncio does), also while serving: new
        # clients are refused, and wait_closed() inside ``async with server:``
        # does not wait for the block to end (it would deadlock).
        spawn_detached(
            self._backend, self._close_listeners, "portastreams server close"
        )

    async def _close_listeners(self) -> None:
        if self._closing_listeners is not None:
            # Already being closed (by close()): wait until that is done.
            await self._closing_listeners.wait()
            return
        done = self._closing_listeners = anyio.Event()
        with anyio.CancelScope(shield=True):
            for listener in self._listeners:
                await anyio.aclose_forcefully(listener)
        self._cleanup_unix_socket()
        self._listeners_closed = True
        done.set()
        self._maybe_idle()

    def _cleanup_unix_socket(self) -> None:
        path = self._unix_path
        if path is None or self._unix_stat is None:
            return
        if _socket_identity(path) == self._unix_stat:
            os.unlink(path)

    def _maybe_idle(self) -> None:
        if (
            self._idle_event is not None
            and self._closed
            and self._listeners_closed
            and self._handlers == 0
        ):
            self._idle_event.set()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every handler has finished.

        On an open server this waits for :meth:`close` first, as asyncio does.
        """
        await self._wait_for_close()
        if self._listeners_closed and self._handlers == 0:
            await anyio.lowlevel.checkpoint()
            return
        if self._idle_event is None:
            self._idle_event = anyio.Event()
        self._maybe_idle()
        await self._idle_event.wait()

    def close_clients(self) -> None:
        """Close every live connection (flushing what was written)."""
        for writer in list(self._connections):
            writer.close()

    def abort_clients(self) -> None:
        """Abort every live connection at once, dropping unsent data."""
        for writer in list(self._connections):
            writer.transport.abort()


def _pause_eager_reading(stream: ByteStream) -> None:
    """Stop an accepted AnyIO asyncio TCP stream from reading ahead without limit.

    AnyIO's asyncio ``connect_tcp()`` pauses its transport (``receive()``
    resumes reading only while it waits), but its TCP listener's ``accept()``
    does not: the transport then reads everything the client sends into an
    unbounded queue, and a handler that does not read never pushes back on
    its client. Pause it the way ``connect_tcp()`` does.
    """
    if type(stream).__module__ != "anyio._backends._asyncio":
        return
    transport = getattr(stream, "_transport", None)
    if transport is not None and transport.is_reading():
        transport.pause_reading()


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


def _refuse_non_socket(path: str) -> None:
    """Raise if ``path`` exists and is not a socket (binding would replace it)."""
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


def _server_ssl_context(ssl: object) -> ssl_module.SSLContext | None:
    if ssl is None:
        return None
    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    raise TypeError(
        f"ssl argument must be an SSLContext or None, not {type(ssl).__name__}"
    )


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | Iterable[str] | None = None,
    port: int | None = None,
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
    """Bind a TCP server and return its :class:`Server`.

    ``client_connected_cb(reader, writer)`` is called for each connection,
    as a plain function or a coroutine function. The server serves inside
    ``async with server:`` or ``serve_forever()`` (see :class:`Server`).
    """
    check_keywords("start_server", kwds)
    check_limit(limit)
    context = _server_ssl_context(ssl)
    if ssl_handshake_timeout is not None and context is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if flags != socket.AI_PASSIVE:
        raise NotImplementedError(
            f"start_server(): flags={flags!r} is not supported by portastreams"
        )
    if reuse_address is False:
        raise NotImplementedError(
            "start_server(): reuse_address=False is not supported by portastreams "
            "(SO_REUSEADDR is always set, as asyncio does by default on Unix)"
        )
    listeners: list[SocketListener] = []
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        sock.listen(backlog)
        listeners.append(await SocketListener.from_socket(sock))
    else:
        hosts: list[str | None]
        if host is None or host == "":
            hosts = [None]
        elif isinstance(host, str):
            hosts = [host]
        else:
            hosts = list(host)
        try:
            for one_host in hosts:
                multi = await anyio.create_tcp_listener(
                    local_host=one_host,
                    local_port=port or 0,
                    family=cast("Any", family),
                    backlog=backlog,
                    reuse_port=bool(reuse_port),
                )
                listeners.extend(cast("list[SocketListener]", multi.listeners))
        except BaseException:
            for listener in listeners:
                await anyio.aclose_forcefully(listener)
            raise
    return Server(
        listeners,
        client_connected_cb,
        limit=limit,
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

    A stale socket file at ``path`` is replaced, as asyncio does; any other
    file there is an error. With ``cleanup_socket`` (the default) the socket
    file is removed when the server closes, if it is still the server's own.
    """
    check_keywords("start_unix_server", kwds)
    check_limit(limit)
    context = _server_ssl_context(ssl)
    if ssl_handshake_timeout is not None and context is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    unix_path: str | None = None
    if sock is not None:
        if path is not None:
            raise ValueError("path and sock can not be specified at the same time")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.listen(backlog)
        listener = await SocketListener.from_socket(sock)
        name = sock.getsockname()
        if isinstance(name, str) and name:
            unix_path = name
    else:
        if path is None:
            raise ValueError("path was not specified, and no sock specified")
        unix_path = os.fspath(path)
        _refuse_non_socket(unix_path)
        listener = await anyio.create_unix_listener(unix_path, backlog=backlog)
    return Server(
        [listener],
        client_connected_cb,
        limit=limit,
        ssl_context=context,
        ssl_handshake_timeout=ssl_handshake_timeout,
        start_serving=start_serving,
        unix_path=unix_path if cleanup_socket else None,
    )
