"""Client connections: ``open_connection``, ``open_unix_connection``, ``wrap_stream``.

Each returns a ``(StreamReader, StreamWriter)`` pair over an AnyIO byte
stream: the reader pulls from the stream (source mode), the writer pushes
through a :class:`~portastreams._transport.StreamTransport`. Failures are the
builtin ``OSError`` subclasses asyncio code catches, with AnyIO's error as
``__cause__``. asyncio keywords that cannot be honoured raise an error naming
them instead of being ignored.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
from collections.abc import Mapping
from typing import Any, Final

import anyio
from anyio.abc import ByteStream

from ._asyncio_native import (
    can_open_natively,
    open_native_connection,
    open_native_unix_connection,
)
from ._backend import running_backend
from ._listeners import set_nodelay
from ._reader import DEFAULT_LIMIT, StreamReader
from ._tls import handshake_timeout, shutdown_timeout
from ._transport import StreamTransport
from ._writer import StreamWriter

__all__ = ["open_connection", "open_unix_connection", "wrap_stream"]

# asyncio keywords accepted when they carry their default value (which is what
# AnyIO does anyway); any other value cannot be honoured.
_DEFAULT_ONLY_KEYWORDS: Final[Mapping[str, object]] = {
    "family": 0,
    "proto": 0,
    "flags": 0,
    "loop": None,
    "interleave": None,
    "all_errors": False,
}


def check_keywords(function: str, kwds: Mapping[str, object]) -> None:
    """Reject asyncio keywords this implementation cannot honour."""
    for name, value in kwds.items():
        if name not in _DEFAULT_ONLY_KEYWORDS:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
        if value != _DEFAULT_ONLY_KEYWORDS[name]:
            raise NotImplementedError(
                f"{function}(): {name}={value!r} is not supported by portastreams "
                f"(only the default, {_DEFAULT_ONLY_KEYWORDS[name]!r})"
            )


def check_limit(limit: int) -> int:
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")
    return limit


def wrap_stream(
    stream: ByteStream, *, limit: int = DEFAULT_LIMIT
) -> tuple[StreamReader, StreamWriter]:
    """Return a ``(reader, writer)`` pair over an AnyIO byte stream you already have.

    The pair owns ``stream``: ``writer.close()`` closes it. Must be called
    from inside the event loop that will use the pair.
    """
    check_limit(limit)
    if not isinstance(stream, ByteStream):
        raise TypeError(
            f"wrap_stream() needs an anyio.abc.ByteStream, not {type(stream).__name__}"
        )
    return make_pair(stream, limit, server_side=False)


def make_pair(
    stream: ByteStream, limit: int, *, server_side: bool
) -> tuple[StreamReader, StreamWriter]:
    """The reader and writer of one connection over ``stream``, reading eagerly."""
    reader = StreamReader(limit=limit)
    transport = StreamTransport(
        stream, running_backend(), reader, server_side=server_side
    )
    reader._attributes = transport
    transport.start()
    return reader, StreamWriter(transport, transport, reader)


async def open_pair(
    stream: ByteStream,
    limit: int,
    *,
    server_side: bool,
    ssl_context: ssl_module.SSLContext | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> tuple[StreamReader, StreamWriter]:
    """:func:`make_pair`, then the TLS handshake if there is a context.

    On a failed handshake the stream is closed and the error raised.
    """
    reader, writer = make_pair(stream, limit, server_side=server_side)
    if ssl_context is not None:
        await writer.start_tls(
            ssl_context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    return reader, writer


def translate_connect_error(exc: OSError) -> OSError:
    """Turn AnyIO's "All connection attempts failed" into the error behind it.

    asyncio code catches ``ConnectionRefusedError`` and friends; AnyIO raises
    a plain ``OSError`` caused by them (or by a group of them). When every
    attempt failed the same way, raise that type, keeping AnyIO's error as
    ``__cause__``.
    """
    cause = exc.__cause__
    if cause is None:
        return exc
    # A group (several addresses tried) or the single error.
    errors: list[BaseException] = list(getattr(cause, "exceptions", [cause]))
    if not errors or not all(isinstance(e, OSError) for e in errors):
        return exc
    first = errors[0]
    assert isinstance(first, OSError)
    if any(type(e) is not type(first) for e in errors):
        return exc
    error = (
        type(first)(first.errno, first.strerror)
        if first.errno
        else type(first)(*first.args)
    )
    error.__cause__ = exc
    return error


def _client_ssl_context(
    ssl: bool | ssl_module.SSLContext | None,
) -> ssl_module.SSLContext | None:
    if ssl is None or ssl is False:
        return None
    if ssl is True:
        return ssl_module.create_default_context()
    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    raise TypeError(
        f"ssl must be None, a bool or an ssl.SSLContext, not {type(ssl).__name__}"
    )


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    ssl: bool | ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    local_addr: tuple[str, int] | None = None,
    sock: socket.socket | None = None,
    happy_eyeballs_delay: float | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **kwds: Any,
) -> tuple[StreamReader, StreamWriter]:
    """Connect over TCP (optionally TLS) and return a ``(reader, writer)`` pair.

    As ``asyncio.open_connection``: ``host``/``port``, or ``sock=`` for an
    already connected socket (which the pair then owns). ``ssl=True`` uses
    a default, verifying context; ``server_hostname`` defaults to ``host``.
    Errors are ``ConnectionRefusedError``, ``socket.gaierror``, ... (``OSError``).
    """
    check_keywords("open_connection", kwds)
    check_limit(limit)
    context = _client_ssl_context(ssl)
    if ssl_handshake_timeout is not None and context is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    handshake_timeout(ssl_handshake_timeout)
    if ssl_shutdown_timeout is not None and context is None:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    shutdown_timeout(ssl_shutdown_timeout)
    if server_hostname is not None and context is None:
        raise ValueError("server_hostname is only meaningful with ssl")
    if sock is not None and (host is not None or port is not None):
        raise ValueError("host/port and sock can not be specified at the same time")
    if context is not None and server_hostname is None:
        if host is None:
            raise ValueError(
                "You must set server_hostname when using ssl without a host"
            )
        server_hostname = host
    if running_backend() == "asyncio" and can_open_natively(
        happy_eyeballs_delay, tls=context is not None
    ):
        return await open_native_connection(
            host,
            port,
            limit=limit,
            ssl_context=context,
            server_hostname=server_hostname,
            local_addr=local_addr,
            sock=sock,
            happy_eyeballs_delay=happy_eyeballs_delay,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    stream: ByteStream
    if sock is not None:
        if local_addr is not None:
            raise ValueError(
                "local_addr and sock can not be specified at the same time"
            )
        if sock.family == socket.AF_UNIX:
            stream = await anyio.abc.UNIXSocketStream.from_socket(sock)
        else:
            set_nodelay(sock)
            stream = await anyio.abc.SocketStream.from_socket(sock)
    else:
        if host is None or port is None:
            raise ValueError("host and port was not specified and no sock specified")
        local_host = None
        if local_addr is not None:
            local_host, local_port = local_addr
            if local_port:
                raise NotImplementedError(
                    "open_connection(): local_addr with a nonzero port is not "
                    "supported on this backend or with ssl (bind a socket to it, "
                    "connect it and pass sock=)"
                )
        options: dict[str, Any] = {}
        if happy_eyeballs_delay is not None:
            options["happy_eyeballs_delay"] = happy_eyeballs_delay
        try:
            stream = await anyio.connect_tcp(
                host, int(port), local_host=local_host, **options
            )
        except OSError as exc:
            error = translate_connect_error(exc)
            if error is exc:
                raise
            raise error from exc
    return await open_pair(
        stream,
        limit,
        server_side=False,
        ssl_context=context,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def open_unix_connection(
    path: str | bytes | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    ssl: bool | ssl_module.SSLContext | None = None,
    sock: socket.socket | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    **kwds: Any,
) -> tuple[StreamReader, StreamWriter]:
    """Connect to a Unix domain socket and return a ``(reader, writer)`` pair.

    ``path`` or ``sock=``; with ``ssl``, ``server_hostname`` is required
    (there is no host name to default to), as in asyncio.
    """
    check_keywords("open_unix_connection", kwds)
    check_limit(limit)
    context = _client_ssl_context(ssl)
    if ssl_handshake_timeout is not None and context is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    handshake_timeout(ssl_handshake_timeout)
    if ssl_shutdown_timeout is not None and context is None:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    shutdown_timeout(ssl_shutdown_timeout)
    if context is not None and not server_hostname:
        raise ValueError("you have to pass server_hostname when using ssl")
    if server_hostname is not None and context is None:
        raise ValueError("server_hostname is only meaningful with ssl")
    if sock is not None:
        if path is not None:
            raise ValueError("path and sock can not be specified at the same time")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
    elif path is None:
        raise ValueError("no path and sock were specified")
    if running_backend() == "asyncio" and can_open_natively(tls=context is not None):
        return await open_native_unix_connection(
            path,
            limit=limit,
            sock=sock,
            ssl_context=context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    stream: ByteStream
    if sock is not None:
        stream = await anyio.abc.UNIXSocketStream.from_socket(sock)
    else:
        assert path is not None
        stream = await anyio.connect_unix(path)
    return await open_pair(
        stream,
        limit,
        server_side=False,
        ssl_context=context,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
