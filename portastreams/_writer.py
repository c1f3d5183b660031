"""``StreamWriter``: asyncio's writer API on every backend.

The writer is a thin veneer, as in asyncio: ``write``/``close``/... go to its
transport, and the two awaits (``drain``, ``wait_closed``) to the protocol
object that knows about flow control. For connections over AnyIO streams the
transport and that protocol are one :class:`~portastreams._transport.
StreamTransport`; for the asyncio-only :class:`~portastreams.
StreamReaderProtocol` they are an asyncio transport and that protocol.
"""

from __future__ import annotations

import ssl
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
from anyio.abc import ByteSendStream

if TYPE_CHECKING:
    from ._reader import StreamReader

__all__ = ["StreamWriter"]


class WriteTransport(Protocol):
    """The part of asyncio's ``WriteTransport`` a writer uses."""

    def write(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def writelines(self, list_of_data: Any, /) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...
    def get_extra_info(self, name: str, default: Any = None, /) -> Any: ...


class FlowControl(Protocol):
    """What a writer awaits: room in the write buffer, and the closed connection."""

    async def _drain_helper(self) -> None: ...
    async def _wait_closed(self) -> None: ...
    def _close_gracefully(self, timeout: float) -> None: ...

    @property
    def extra_attributes(self) -> Any: ...


@runtime_checkable
class TLSUpgrade(FlowControl, Protocol):
    """A protocol object that can switch its connection to TLS (``start_tls``).

    ``_start_tls`` returns the transport that carries the connection from then
    on, or ``None`` when the same one does. The writer calls
    ``_abandon_tls(transport)`` with a transport it was handed after this side
    closed the connection during the handshake.
    """

    async def _start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None = None,
    ) -> Any: ...
    def _abandon_tls(self, transport: Any) -> None: ...


def _is_bytes_type(data: object) -> bool:
    return isinstance(data, (bytes, bytearray, memoryview))


def _raise_not_bytes(data: object) -> None:
    raise TypeError(
        f"data argument must be a bytes-like object, not {type(data).__name__!r}"
    )


def _is_bytes_like(data: object) -> bool:
    try:
        memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def _asyncio_writelines_error(data: object) -> TypeError | None:
    """The ``TypeError`` asyncio's socket transport raises for ``writelines(data)``.

    Python 3.12 and later build a ``memoryview`` of each item; earlier
    versions ``b"".join()`` them. ``None`` when ``data`` is an iterator (its
    items cannot be looked at again) or holds nothing wrong.
    """
    new_transport = sys.version_info >= (3, 12)
    if not isinstance(data, Sequence):
        try:
            iter(data)  # type: ignore[call-overload]
        except TypeError:
            if new_transport:
                return TypeError(f"{type(data).__name__!r} object is not iterable")
            return TypeError("can only join an iterable")
        return None
    for index, item in enumerate(data):
        if not _is_bytes_like(item):
            name = type(item).__name__
            if new_transport:
                return TypeError(
                    f"memoryview: a bytes-like object is required, not {name!r}"
                )
            return TypeError(
                f"sequence item {index}: expected a bytes-like object, {name} found"
            )
    return None


class StreamWriter(ByteSendStream):
    """asyncio's ``StreamWriter``: synchronous writes, ``drain()`` for flow control.

    ``write()`` never blocks and the data is sent without any ``drain()``;
    ``drain()`` waits while more than the high-water mark (64 KiB by default,
    see ``transport.set_write_buffer_limits``) is buffered and raises the
    connection's error once the connection is gone. ``close()`` sends what
    was written, then closes; ``wait_closed()`` waits for that.

    The writer is also an ``anyio.abc.ByteSendStream``: ``send()`` is
    ``write()`` + ``drain()``, ``send_eof()`` is ``write_eof()``, ``aclose()``
    is ``close()`` + ``wait_closed()``.
    """

    def __init__(
        self,
        transport: Any,
        protocol: Any,
        reader: StreamReader | None,
        loop: object = None,
    ) -> None:
        self._transport: WriteTransport = transport
        self._protocol: FlowControl = protocol
        self._reader = reader

    def __repr__(self) -> str:
        info = [self.__class__.__name__, f"transport={self._transport!r}"]
        if self._reader is not None:
            info.append(f"reader={self._reader!r}")
        return "<{}>".format(" ".join(info))

    @property
    def transport(self) -> Any:
        """The underlying transport (``get_write_buffer_size()``, ``abort()``, ...)."""
        return self._transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending; returns at once, keeps order.

        Raises ``TypeError`` for data that is not bytes-like (with asyncio's
        message on every backend) and ``RuntimeError`` after :meth:`write_eof`.
        """
        if not data and not _is_bytes_type(data):
            # uvloop accepts write(None) or write("") silently; asyncio does not.
            _raise_not_bytes(data)
        try:
            self._transport.write(data)
        except (RuntimeError, AttributeError):
            # uvloop (and, after a close with data pending, CPython 3.11's
            # selector transport) fail a write after the connection is gone;
            # asyncio's contract is to drop it: drain() reports the loss.
            if not self._connection_lost():
                raise
        except TypeError:
            # uvloop says "memoryview: a bytes-like object is required";
            # say what asyncio says. Only here, off the success path.
            if isinstance(data, (bytes, bytearray, memoryview)):
                raise
            raise TypeError(
                "data argument must be a bytes-like object, "
                f"not {type(data).__name__!r}"
            ) from None

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each item of ``data``, in order.

        Raises ``TypeError`` if ``data`` is not an iterable of bytes-like
        objects, with the message asyncio's socket transports give on this
        Python when ``data`` is a sequence.
        """
        # All or nothing, as asyncio (which joins the items first): look at
        # every item before any is written.
        items = data if isinstance(data, (list, tuple)) else None
        if items is None:
            try:
                items = list(data)
            except TypeError:
                error = _asyncio_writelines_error(data)
                if error is None:
                    raise
                raise error from None
        for item in items:
            if not isinstance(item, (bytes, bytearray, memoryview)) and not (
                _is_bytes_like(item)
            ):
                error = _asyncio_writelines_error(items)
                assert error is not None
                raise error
        try:
            self._transport.writelines(items)
        except (RuntimeError, AttributeError):
            if not self._connection_lost():
                raise

    def _connection_lost(self) -> bool:
        """True once an asyncio protocol saw the connection go.

        uvloop's transports raise ``RuntimeError`` on a write after that;
        asyncio's drop the data and let ``drain()`` report the loss, which
        is what portable code expects: do as asyncio.
        """
        protocol = self._protocol
        return bool(
            getattr(protocol, "_connection_lost", False)
            or getattr(protocol, "_lingering", False)
        )

    def write_eof(self) -> None:
        """Half-close: the peer reads EOF after everything written so far."""
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """True if :meth:`write_eof` is supported (False over TLS, as asyncio)."""
        return self._transport.can_write_eof()

    def close(self) -> None:
        """Send what was written, then close the connection (both directions)."""
        self._transport.close()

    def _close_gracefully(self, timeout: float) -> None:
        """Flush, shut down writing, and close once the peer has finished sending.

        The peer reads everything written, then EOF (never a reset); the
        connection closes when the peer's EOF arrives or after ``timeout``
        seconds. Writes meanwhile are dropped, as after :meth:`close`.
        """
        self._protocol._close_gracefully(timeout)

    def is_closing(self) -> bool:
        """True once :meth:`close` was called or the connection was lost."""
        # (A graceful close by the server has half-closed an asyncio
        # transport, which then still says it is open.)
        return self._transport.is_closing() or bool(
            getattr(self._protocol, "_lingering", False)
        )

    async def wait_closed(self) -> None:
        """Wait until the connection is closed; never raises for a peer that left."""
        await self._protocol._wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket``, TLS details...; ``default`` if unknown."""
        return self._transport.get_extra_info(name, default)

    async def drain(self) -> None:
        """Wait until the write buffer is below the high-water mark.

        Returns at once while it is at or below the high-water mark (the
        common case, which costs no task switch); otherwise waits until it
        falls to the low-water mark. Raises the connection error after the
        connection is lost (``ConnectionResetError`` family).
        """
        reader = self._reader
        if reader is not None:
            exc = reader._exception or reader._pending_error  # (no news asked)
            if exc is not None:
                raise exc
        await self._protocol._drain_helper()

    async def start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        """Upgrade the connection to TLS (``STARTTLS``-style protocols).

        Everything written before is sent in plain text first; bytes the
        reader already buffered stay first in line, later ones are
        decrypted. A read may be waiting meanwhile, as in asyncio. Failures
        are asyncio's: the ``ssl.SSLError`` of a bad certificate,
        ``ConnectionResetError`` if the peer hangs up, and on timeout an
        error that is both ``ConnectionAbortedError`` and ``TimeoutError``;
        the connection is closed after any of them.
        """
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext must be an ssl.SSLContext, not {type(sslcontext).__name__}"
            )
        protocol = self._protocol
        if not isinstance(protocol, TLSUpgrade):  # asyncio's own protocols
            raise NotImplementedError(
                f"start_tls() is not supported on {type(self._transport).__name__}"
            )
        await self.drain()
        # Bytes written from here until the handshake is done wait, and are
        # sent encrypted after it (asyncio's writer would send them in plain
        # text in the middle of the handshake, breaking it).
        plain_transport = self._transport
        hold = self._transport = _WritesHeldForTLS(plain_transport)
        try:
            new_transport = await protocol._start_tls(
                sslcontext,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        finally:
            self._transport = plain_transport
        if hold.closed:
            # Closed by this side meanwhile: the handshake did not finish for
            # the connection's user (a loop may still hand out a transport).
            if new_transport is not None:
                protocol._abandon_tls(new_transport)
            raise ConnectionResetError("Connection lost")
        if new_transport is not None:
            # asyncio hands out a new transport for the TLS layer.
            self._transport = new_transport
        if hold.held:
            self._transport.write(bytes(hold.held))

    # -- anyio.abc.ByteSendStream -------------------------------------------

    async def send(self, item: bytes) -> None:
        """``write(item)`` then ``drain()``."""
        self.write(item)
        await self.drain()

    async def send_eof(self) -> None:
        """``write_eof()``."""
        self.write_eof()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """``close()`` then ``wait_closed()``."""
        self.close()
        await self.wait_closed()

    @property
    def extra_attributes(self) -> Any:
        """AnyIO's typed attributes (``SocketAttribute``, ``TLSAttribute``)."""
        return self._protocol.extra_attributes

    def __del__(self, warnings: Any = warnings) -> None:
        # As asyncio's StreamWriter: a writer dropped while its connection is
        # open closes it (the peer sees EOF), with a ResourceWarning.
        transport = getattr(self, "_transport", None)
        if transport is None or transport.is_closing():
            return
        try:
            self.close()
        except Exception:  # the event loop, or the interpreter, is gone
            warnings.warn("loop is closed", ResourceWarning, stacklevel=1)
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1)


class _WritesHeldForTLS:
    """The writer's transport while ``start_tls()`` waits for the handshake.

    ``write()`` and ``writelines()`` keep the bytes (after asyncio's type
    checks) for the TLS transport; everything else is the plain transport's.
    """

    def __init__(self, transport: Any) -> None:
        self._plain = transport
        self.held = bytearray()
        #: Closed or aborted by this side while the handshake ran.
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._plain.close()

    def abort(self) -> None:
        self.closed = True
        self._plain.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                "data argument must be a bytes-like object, "
                f"not {type(data).__name__!r}"
            )
        self.held += data

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        for data in list_of_data:
            self.held += memoryview(data).cast("B")

    def get_write_buffer_size(self) -> int:
        size: int = self._plain.get_write_buffer_size()
        return size + len(self.held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plain, name)
