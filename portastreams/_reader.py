"""``StreamReader``: asyncio's buffered reader on every AnyIO backend.

A reader gets its bytes in one of two ways:

* **feed mode** -- somebody calls :meth:`StreamReader.feed_data` /
  :meth:`~StreamReader.feed_eof` / :meth:`~StreamReader.set_exception`, as an
  asyncio protocol does. A waiting read is woken through an asyncio future
  or by rescheduling its trio task, so a fed reader works inside any
  backend's event loop. A transport may also let a read that needs more
  receive itself (``_puller``, a plain socket on trio): it is still fed,
  by its own task.
* **source mode** -- the reader owns an ``anyio.abc.ByteReceiveStream`` and
  calls its ``receive()`` only when the buffer cannot answer the current read.

Either way the read rules live in the sans-I/O :mod:`portastreams._buffer`;
this module only decides *when* to wait. Cancellation safety follows from the
structure: the only await in a read is the wait for more data, which either
adds a whole chunk to the buffer or adds nothing, and bytes leave the buffer
only in the synchronous step that completes the read.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Final, Protocol

import anyio
from anyio.abc import ByteReceiveStream

from ._backend import Backend, running_backend
from ._buffer import ReadBuffer, SeparatorSearch
from ._exceptions import connection_error_from

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

from collections.abc import Callable, Mapping

__all__ = ["DEFAULT_LIMIT", "StreamReader"]

#: The default ``limit``, as asyncio's (64 KiB).
DEFAULT_LIMIT: Final = 2**16

#: The smallest receive a source-mode reader asks its stream for.
MIN_RECEIVE_SIZE: Final = 2**16
#: The largest single receive, however much a ``readexactly`` still needs.
MAX_RECEIVE_SIZE: Final = 2**18
#: The most unread head bytes a receive is joined to (see ``StreamReader._head``);
#: a read that needs more than this gathers in the bytearray, so copying
#: stays linear in what is received.
MAX_HEAD_JOIN: Final = 2**16


class ReadTransport(Protocol):
    """What :meth:`StreamReader.set_transport` needs for flow control."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class _Puller(Protocol):
    """A transport that receives in the reading task (see :meth:`StreamReader._wait_for_data`)."""

    async def _pull(self, chunk_size: int = 0) -> bytes: ...
    def _poll(self) -> None: ...


class _AttributeProvider(Protocol):
    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]: ...


class _TaskWaiter:
    """One wait of a fed reader on trio: the parked task itself.

    The task sleeps in ``trio.lowlevel.wait_task_rescheduled`` and the feeder
    reschedules it with the outcome: no ``trio.Event`` and parking lot per
    wait (about 800 bytes on every idle connection). On asyncio the waiter
    is a bare future, exactly what asyncio's own reader awaits.
    """

    __slots__ = ("reader", "task")

    def __init__(self, reader: StreamReader, task: Any) -> None:
        self.reader = reader
        self.task = task

    def abort(self, _: object) -> Any:
        """Cancelled before a feed woke it: unhook (nothing was consumed)."""
        if self.reader._waiter is self:
            self.reader._waiter = None
        return _trio_lowlevel.Abort.SUCCEEDED

    def __repr__(self) -> str:
        return "<waiter pending>"


class _SourceWait:
    """Marks a reader as receiving itself (for the concurrency check).

    A source-mode read receives inside ``scope``, which
    :meth:`StreamReader.set_exception` cancels; a pulled read (``scope`` is
    ``None``) is woken by its transport.
    """

    __slots__ = ("scope",)

    def __init__(self, scope: anyio.CancelScope | None = None) -> None:
        self.scope = scope

    def __repr__(self) -> str:
        return "<receiving>"


_RECEIVING: Final = _SourceWait()
#: The type of the futures asyncio's (and uvloop's) ``create_future()`` makes.
_FUTURE_TYPE: Final = asyncio.Future


class StreamReader(ByteReceiveStream):
    """A buffered reader with asyncio's ``StreamReader`` API and semantics.

    ``StreamReader(limit=2**16, loop=None)`` creates a reader in feed mode;
    the connection functions and :func:`portastreams.wrap_stream` create
    readers in source mode. ``limit`` bounds what ``readline`` and
    ``readuntil`` may return (not counting the separator); ``loop`` is
    accepted for compatibility and ignored.

    Every read returns the same bytes and raises the same exceptions as
    CPython 3.13's ``asyncio.StreamReader`` for the same input, however it
    is chunked. Reads are cancellation-safe: a cancelled read consumes
    nothing. Only one task may wait for data at a time; a second gets
    ``RuntimeError``.

    The reader is also an ``anyio.abc.ByteReceiveStream``; iterating it with
    ``async for`` yields lines, as in asyncio (not chunks, as AnyIO streams).
    """

    #: The asyncio event loop a fed read waits in, kept from the first wait
    #: of a reader without a source or puller: asking for the running loop
    #: costs more than the rest of a wait on Python 3.10 and 3.11. A reader
    #: used in another loop later (a later ``asyncio.run()``) gives it up.
    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, limit: int = DEFAULT_LIMIT, loop: object = None) -> None:
        if limit <= 0:
            raise ValueError("Limit cannot be <= 0")
        self._limit = limit
        self._core = ReadBuffer(limit)
        #: The buffered bytes after the head (the same bytearray as
        #: ``self._core.data``, where the read rules look).
        self._data: Final = self._core.data
        #: Pull and source modes: a received chunk, unread from
        #: ``_head_start`` on, that holds everything buffered while ``_data``
        #: is empty. A read that its head answers (a line, ``n`` bytes)
        #: returns one slice of it: one copy, where the bytearray costs two
        #: and a ``del``. Every other path first moves it into ``_data``
        #: (:meth:`_unhead`). A head read to its end stays until the next
        #: receive replaces it, or a wait drops it. There is no head while
        #: an exception is set (:meth:`_fail` moves it), so head reads need
        #: not look for one.
        self._head = b""
        self._head_start = 0
        self._exception: BaseException | None = None
        self._waiter: asyncio.Future[None] | _TaskWaiter | _SourceWait | None = None
        self._transport: ReadTransport | None = None
        self._paused = False
        self._source: ByteReceiveStream | None = None
        self._receive_size = max(limit, MIN_RECEIVE_SIZE)
        self._backend: Backend | None = None
        self._pending_error: BaseException | None = None
        #: The connection whose typed attributes the reader reports.
        self._attributes: _AttributeProvider | None = None
        #: The transport a read that needs more bytes receives from, in its
        #: own task, instead of waiting to be fed (trio's plain sockets).
        self._puller: _Puller | None = None

    # -- construction for source mode ------------------------------------

    @classmethod
    def from_stream(
        cls, stream: ByteReceiveStream, *, limit: int = DEFAULT_LIMIT
    ) -> StreamReader:
        """Return a reader in source mode, pulling from ``stream`` on demand.

        :meth:`set_exception` ends a read that waits in ``stream.receive()``
        (cancelling that receive); bytes and EOF fed meanwhile are read once
        the receive returns.
        """
        reader = cls(limit)
        reader._source = stream
        return reader

    def _replace_source(self, stream: ByteReceiveStream) -> None:
        """Continue reading from ``stream``, keeping what is buffered (``start_tls``)."""
        self._source = stream
        self._loop = None

    def _pull_from(self, puller: _Puller | None) -> None:
        """Let reads that need more bytes receive from ``puller`` (or be fed)."""
        self._puller = puller
        self._loop = None

    # -- the buffer --------------------------------------------------------

    @property
    def _buffer(self) -> bytearray:
        """Everything buffered, as one bytearray: asyncio's private attribute.

        Some asyncio libraries read it (redis-py asks whether it is empty
        before it reuses a pooled connection), so it keeps asyncio's meaning.
        """
        self._unhead()
        return self._data

    def _unhead(self) -> None:
        """Move the head's unread bytes to the front of ``_data``."""
        head = self._head
        if head:
            self._data[:0] = memoryview(head)[self._head_start :]
            self._head = b""
            self._head_start = 0

    def _buffered(self) -> int:
        """How many bytes are buffered, head and bytearray."""
        return len(self._head) - self._head_start + len(self._data)

    # -- feed mode ---------------------------------------------------------

    def exception(self) -> BaseException | None:
        """Return the connection's error, or the one given to :meth:`set_exception`.

        A connection error is reported here as soon as it happens, as asyncio
        does, even while bytes that arrived before it are still buffered
        (reads return those first; asyncio's would drop them).
        """
        if self._puller is not None and self._pending_error is None:
            # (Even after set_exception(): a reset replaces it, as asyncio's
            # connection_lost() does.)
            self._puller._poll()
        return self._exception or self._pending_error

    def set_exception(self, exc: BaseException) -> None:
        """Make every following read raise ``exc``; a waiting read raises it now."""
        self._fail(exc)
        self._wake_waiter(exc)

    def _fail(self, exc: BaseException) -> None:
        """Make every following read raise ``exc`` (the head joins ``_data``)."""
        self._exception = exc
        if self._head:
            self._unhead()

    def _connection_lost(self, exc: BaseException) -> None:
        """The connection failed: reads get what is buffered, then ``exc``.

        Unlike :meth:`set_exception` (asyncio's contract, which makes every
        read raise at once), bytes that arrived before the failure are not
        lost: the error is raised when a read needs more than the buffer. An
        exception set before it is replaced, as asyncio's ``connection_lost()``
        does. Calling it again with the same error changes nothing.
        """
        if not self._buffered() or self._exception is not None:
            self.set_exception(exc)
            return
        self._pending_error = exc
        self._wakeup_waiter()

    def _wakeup_waiter(self) -> None:
        """Wake a fed read that waits: data or the end of the stream arrived."""
        waiter = self._waiter
        if waiter is None:
            return
        # The common case inline (a read waits on an asyncio future): this
        # runs once per receive.
        if type(waiter) is _FUTURE_TYPE:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
            return
        self._wake_waiter(None)

    def _wake_waiter(self, exc: BaseException | None) -> None:
        """Wake a fed read that waits, with ``exc`` to raise, or ``None``."""
        waiter = self._waiter
        if waiter is None:
            return
        if waiter is _RECEIVING:
            # A read that receives itself: its transport wakes it (even one
            # that handed reading to a receiver meanwhile, start_tls).
            interrupt = getattr(self._transport, "_interrupt_pull", None)
            if interrupt is not None:
                interrupt()
            return
        if isinstance(waiter, _SourceWait):
            # A source-mode read inside its stream's receive(): an error ends
            # it (what the stream then drops, no read would return); bytes
            # and EOF fed meanwhile are read once the receive returns.
            if exc is not None and waiter.scope is not None:
                waiter.scope.cancel()
            return
        self._waiter = None
        if isinstance(waiter, _TaskWaiter):
            _reschedule(waiter.task, exc)
        elif isinstance(waiter, asyncio.Future) and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def set_transport(self, transport: ReadTransport) -> None:
        """Attach the transport whose reading is paused while the buffer is full."""
        if self._transport is not None:
            raise RuntimeError("Transport already set")
        self._transport = transport

    def _maybe_resume_transport(self) -> None:
        if self._paused and len(self._data) <= self._limit:
            self._paused = False
            assert self._transport is not None
            try:  # noqa: SIM105 (no context manager on this path)
                self._transport.resume_reading()
            except (AttributeError, RuntimeError):
                pass  # a closed transport (Python 3.10's TLS one fails so)

    def feed_eof(self) -> None:
        """Record the end of the stream; reads return what is left, then EOF."""
        self._core.eof = True
        self._wakeup_waiter()

    def at_eof(self) -> bool:
        """Return True if the buffer is empty and the end of the stream was seen."""
        if self._puller is not None and not self._buffered() and not self._core.eof:
            self._puller._poll()
        return self._core.eof and not self._buffered()

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the buffer and wake a waiting read.

        Raises ``RuntimeError`` after :meth:`feed_eof`: data after the end of
        the stream is a bug in the feeder, and dropping it would lose bytes.
        """
        if self._core.eof:
            raise RuntimeError("feed_data() called after feed_eof()")
        if not data:
            return
        if self._head:
            self._unhead()
        self._data.extend(data)
        waiter = self._waiter
        if waiter is not None:
            # _wakeup_waiter(), inline: this runs once per receive.
            if type(waiter) is _FUTURE_TYPE:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._wake_waiter(None)
        if (
            self._transport is not None
            and not self._paused
            and len(self._data) > 2 * self._limit
        ):
            try:
                self._transport.pause_reading()
            except NotImplementedError:
                # The transport cannot pause: stop trying.
                self._transport = None
            else:
                self._paused = True

    # -- waiting -----------------------------------------------------------

    async def _wait_for_data(
        self, func_name: str, wanted: int = 0, chunk_size: int = 0
    ) -> bytes:
        """Wait until more data, the end of the stream or an error arrives.

        ``wanted`` is how many more bytes the current read needs, a hint for
        the size of the next receive in source mode. In pull mode (a
        ``_puller``), the read receives in its own task. With ``chunk_size``,
        in pull and source modes, up to that many bytes received may be
        returned instead of buffered (else, and in feed mode, ``b""``).
        """
        loop = self._loop
        if (
            loop is None
            or self._waiter is not None
            or self._pending_error is not None
            or self._paused
        ):
            # Off the per-wait path of a fed reader on asyncio (its first
            # wait, or other modes, or news to handle first).
            if self._waiter is not None:
                raise RuntimeError(
                    f"{func_name}() called while another coroutine is "
                    f"already waiting for incoming data"
                )
            if self._source is not None:
                size = min(max(wanted, self._receive_size), MAX_RECEIVE_SIZE)
                data = await self._receive(self._source, size)
                if self._exception is not None:
                    # set_exception() came as the receive returned: keep the
                    # bytes (as asyncio's buffer would) and raise.
                    self._data.extend(data)
                    raise self._exception
                if chunk_size:
                    return data
                self._data.extend(data)
                return b""
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                self._fail(error)
                raise error
            # Waiting for data while paused would deadlock (readexactly(n)
            # with n > limit needs more than the pause threshold).
            if self._paused:
                self._paused = False
                assert self._transport is not None
                self._transport.resume_reading()
            puller = self._puller
            if puller is not None:
                # (Inline: each frame of the await chain stays alive on every
                # idle connection.)
                self._waiter = _RECEIVING
                try:
                    chunk = await puller._pull(chunk_size)
                finally:
                    self._waiter = None
                if self._exception is not None:
                    # Set meanwhile (a fed wait is woken so): keep what came.
                    self._data.extend(chunk)
                    raise self._exception
                return chunk
            if loop is None:
                if self._backend is None:
                    self._backend = running_backend()
                if self._backend != "asyncio":
                    lowlevel = _trio_lowlevel or _bind_trio()
                    waiter = self._waiter = _TaskWaiter(self, lowlevel.current_task())
                    await lowlevel.wait_task_rescheduled(waiter.abort)
                    return b""
                loop = self._loop = asyncio.get_running_loop()
        future = self._waiter = loop.create_future()
        try:
            await future
        except RuntimeError:
            # The task runs in another loop than the kept one (a later
            # asyncio.run()): wait in that one from now on. b"": the caller
            # looks at the buffer again, then waits.
            if not self._left_loop(loop):
                raise
        finally:
            if self._waiter is future:
                self._waiter = None
        return b""

    def _left_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Forget the kept ``loop`` if the read runs in another one."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if running is loop:
            return False
        self._loop = None
        return True

    async def _receive(self, source: ByteReceiveStream, size: int) -> bytes:
        """One ``receive()`` from the source: ``b""`` (and EOF recorded) at its end.

        A connection failure is recorded and raised as the builtin ``OSError``
        asyncio code expects, AnyIO's error as ``__cause__``. An exception
        given to :meth:`set_exception` meanwhile ends the receive and is
        raised.
        """
        scope = anyio.CancelScope()
        self._waiter = _SourceWait(scope)
        try:
            with scope:
                return await source.receive(size)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._core.eof = True
            return b""
        except (anyio.BrokenResourceError, OSError) as exc:
            error = connection_error_from(exc)
            self._fail(error)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._waiter = None
        # Cancelled by set_exception(), and by nothing else.
        assert self._exception is not None
        raise self._exception

    # -- reads -------------------------------------------------------------

    async def readline(self) -> bytes:
        """Read one line, ending with ``b"\\n"``.

        At EOF without a newline, return the partial line; at EOF with an
        empty buffer, return ``b""``. If the line exceeds ``limit``, raise
        ``ValueError`` and drop the line (up to and including its newline),
        or the whole buffer if no newline was seen yet.
        """
        # The per-line path of pull and source modes: a line (within the
        # limit) in the head.
        head = self._head
        if head:
            start = self._head_start
            end = head.find(b"\n", start)
            if 0 <= end - start <= self._limit:
                end += 1
                self._head_start = end
                return head[start:end]
        buffer = self._data
        reading = None
        if buffer:
            if self._exception is None:
                # The per-line path of feed mode.
                end = buffer.find(b"\n")
                if 0 <= end <= self._limit:
                    # The line, inline: this is the per-line path.
                    end += 1
                    line = bytes(buffer[:end])
                    del buffer[:end]
                    if self._paused and len(buffer) <= self._limit:
                        self._maybe_resume_transport()
                    return line
        elif (
            self._puller is not None or self._source is not None
        ) and self._exception is None:
            # (Here rather than in readuntil(): one coroutine frame fewer on
            # every idle connection.)
            found = await self._readuntil_head(b"\n")
            if isinstance(found, bytes):
                return found
            if self._head:
                self._unhead()
            reading = self._readuntil(SeparatorSearch.resumed(b"\n", found))
        # The rest is readuntil()'s, which raises a set exception first.
        try:
            return await (reading or self.readuntil(b"\n"))
        # asyncio's classes, not only ours: an exception given to
        # set_exception() is re-raised here, and CPython's readline() turns
        # any IncompleteReadError / LimitOverrunError into its result.
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            if buffer.startswith(b"\n", exc.consumed):
                del buffer[: exc.consumed + 1]
            else:
                buffer.clear()
            self._maybe_resume_transport()
            raise ValueError(exc.args[0])  # noqa: B904 (CPython chains it implicitly)

    async def _readuntil_head(self, separator: bytes) -> bytes | int:
        """``readuntil(separator)`` in the head, receiving onto it as needed.

        Where the general path must answer instead (it raises or waits as
        CPython's does) -- the match is beyond the limit, or so is the
        search, or the head cannot take another receive (see
        :meth:`_head_can_grow`) -- it returns the offset to resume from with
        :meth:`SeparatorSearch.resumed`, which repeats the last step. As in
        CPython, that offset counts from the first unread byte, so it is
        stale after a concurrent ``read()`` took bytes meanwhile.
        """
        seplen = len(separator)
        limit = self._limit
        offset = 0
        while True:
            head = self._head
            if head:
                start = self._head_start
                unread = len(head) - start
                if unread - offset >= seplen:
                    end = head.find(separator, start + offset)
                    if end != -1:
                        if end - start > limit:
                            return offset
                        end += seplen
                        self._head_start = end
                        return head[start:end]
                    if unread + 1 - seplen > limit:
                        return offset  # (the resumed search repeats this step)
                    offset = unread + 1 - seplen
            if not self._head_can_grow():
                return offset
            self._join_head(
                await self._wait_for_data("readuntil", chunk_size=MAX_RECEIVE_SIZE)
            )

    def _head_can_grow(self) -> bool:
        """Whether a read may receive onto the head (pull and source modes).

        Not with bytes in ``_data``, at the end of the stream, after an
        error, or with ``MAX_HEAD_JOIN`` unread head bytes already: the
        general path goes on then. A head read to its end is dropped (an
        idle connection keeps no chunk).

        A read then waits inline, ``_wait_for_data(..., chunk_size=
        MAX_RECEIVE_SIZE)``, and gives :meth:`_join_head` what it got: no
        coroutine of its own, as each frame of the await chain stays alive
        on every idle connection.
        """
        if (
            self._data
            or self._core.eof
            or self._exception is not None
            or len(self._head) - self._head_start >= MAX_HEAD_JOIN
        ):
            return False
        if self._head_start == len(self._head):
            self._head = b""
            self._head_start = 0
        return True

    def _join_head(self, chunk: bytes) -> None:
        """Append a chunk received for the head (``b""``: bytes, the end of
        the stream or an error came another way; the read looks again)."""
        if chunk:
            head = self._head
            if self._data:  # fed meanwhile, by another task: those came first
                self._data.extend(chunk)
            elif head:
                self._head = head[self._head_start :] + chunk
                self._head_start = 0
            else:
                self._head = chunk

    def _take_head(self, n: int) -> bytes:
        """Remove and return up to ``n`` bytes of the head."""
        head = self._head
        start = self._head_start
        end = min(start + n, len(head))
        self._head_start = end
        return head[start:end]

    async def readuntil(self, separator: bytes | tuple[bytes, ...] = b"\n") -> bytes:
        """Read up to and including the first separator.

        ``separator`` is bytes or a tuple of bytes; the match that ends first
        wins. At EOF without a separator raise ``IncompleteReadError`` whose
        ``partial`` holds the whole buffer (which is emptied). If no separator
        is found within ``limit`` bytes raise ``LimitOverrunError``, leaving
        the data in the buffer.
        """
        if type(separator) is not bytes or not separator or self._exception is not None:
            if self._head:
                self._unhead()
            return await self._readuntil(SeparatorSearch(separator))
        # One bytes separator, the common case: CPython's search loop itself,
        # inline (readline() waits in it too). It ends with a match within
        # the limit, or at the limit or EOF, where the general search
        # (SeparatorSearch), given the saved offset -- stale if a concurrent
        # read() took bytes meanwhile, as in CPython -- repeats the last step
        # and raises what CPython raises.
        buffer = self._data
        if not buffer and (self._puller is not None or self._source is not None):
            found = await self._readuntil_head(separator)
            if isinstance(found, bytes):
                return found
            if self._head:
                self._unhead()
            return await self._readuntil(SeparatorSearch.resumed(separator, found))
        core = self._core
        limit = self._limit
        seplen = len(separator)
        offset = 0
        while True:
            buflen = len(buffer)
            if buflen - offset >= seplen:
                end = buffer.find(separator, offset)
                if 0 <= end <= limit:
                    # The match, inline: the per-request path.
                    end += seplen
                    if end == buflen:
                        found = bytes(buffer)
                        buffer.clear()
                    else:
                        found = bytes(buffer[:end])
                        del buffer[:end]
                    if self._paused and len(buffer) <= limit:
                        self._maybe_resume_transport()
                    return found
                if end != -1 or buflen + 1 - seplen > limit:
                    break
                offset = buflen + 1 - seplen
            if core.eof:
                break
            await self._wait_for_data("readuntil")
        SeparatorSearch.resumed(separator, offset).step(core)  # raises
        raise AssertionError("unreachable")  # pragma: no mutate

    async def _readuntil(self, search: SeparatorSearch) -> bytes:
        """Search, and wait for data, until ``search`` finds its separator."""
        if self._exception is not None:
            raise self._exception
        core = self._core
        while True:
            end = search.step(core)
            if end is not None:
                chunk = core.take(end)
                self._maybe_resume_transport()
                return chunk
            await self._wait_for_data("readuntil")

    async def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes; with ``n < 0``, read until EOF.

        Returns ``b""`` at EOF with an empty buffer, or for ``n == 0``.
        ``read(n)`` returns as soon as any data is buffered.
        """
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if n > 0 and self._head_start < len(self._head):
            return self._take_head(n)
        core = self._core
        if n < 0:
            # Wait for EOF before consuming anything, so that a cancelled
            # read(-1) loses nothing (asyncio's loses what it had read).
            self._unhead()
            while not core.eof:
                await self._wait_for_data("read")
            data = core.take(len(self._data))
            self._maybe_resume_transport()
            return data
        if not self._data and not core.eof:
            if n >= self._receive_size and self._waiter is None:
                # Nothing buffered and the caller takes a whole receive:
                # hand the chunk over without copying it through the buffer.
                source = self._source
                if source is not None:
                    return await self._receive(source, min(n, MAX_RECEIVE_SIZE))
                if self._puller is not None:
                    size = min(n, MAX_RECEIVE_SIZE)
                    chunk = await self._wait_for_data("read", chunk_size=size)
                    if chunk:
                        return chunk
            if self._puller is not None or self._source is not None:
                while self._head_can_grow():
                    self._join_head(
                        await self._wait_for_data("read", chunk_size=MAX_RECEIVE_SIZE)
                    )
                    if self._head_start < len(self._head):
                        return self._take_head(n)
            while not self._data and not core.eof:
                await self._wait_for_data("read")
        data = core.take(n)
        self._maybe_resume_transport()
        return data

    async def readexactly(self, n: int) -> bytes:
        """Read exactly ``n`` bytes.

        At EOF before ``n`` bytes, raise ``IncompleteReadError`` whose
        ``partial`` holds what was buffered (the buffer is emptied).
        """
        head = self._head
        if head and n > 0:
            # The per-frame path of pull and source modes: in the head.
            start = self._head_start
            end = start + n
            if end <= len(head):
                self._head_start = end
                return head[start:end]
        buffer = self._data
        if 0 < n < len(buffer) and self._exception is None:
            # The per-frame path: a part of what is buffered.
            data = bytes(buffer[:n])
            del buffer[:n]
            if self._paused and len(buffer) <= self._limit:
                self._maybe_resume_transport()
            return data
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if (
            not buffer
            and n <= MAX_HEAD_JOIN
            and (self._puller is not None or self._source is not None)
        ):
            while self._head_can_grow():
                self._join_head(
                    await self._wait_for_data(
                        "readexactly", chunk_size=MAX_RECEIVE_SIZE
                    )
                )
                if self._head_start + n <= len(self._head):
                    return self._take_head(n)
            self._unhead()
        if len(buffer) == n:
            data = bytes(buffer)
            buffer.clear()
        else:
            core = self._core
            while True:
                result = core.readexactly_step(n)
                if result is not None:
                    data = result
                    break
                await self._wait_for_data("readexactly", n - len(buffer))
        if self._paused and len(buffer) <= self._limit:
            self._maybe_resume_transport()
        return data

    # -- iteration ---------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if line == b"":
            raise StopAsyncIteration
        return line

    # -- anyio.abc.ByteReceiveStream -----------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Return up to ``max_bytes`` bytes, buffered ones first.

        The AnyIO stream contract: raises ``anyio.EndOfStream`` at EOF instead
        of returning ``b""``.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        data = await self.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        """Close the source stream (if any) and drop what is buffered."""
        self._data.clear()
        self._head = b""
        self._head_start = 0
        self._core.eof = True
        self._wakeup_waiter()
        if self._source is not None:
            await self._source.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        if self._attributes is not None:
            return self._attributes.extra_attributes
        if self._source is not None:
            return self._source.extra_attributes
        return {}

    # -- repr --------------------------------------------------------------

    def __repr__(self) -> str:
        info = ["StreamReader"]
        buffered = self._buffered()
        if buffered:
            info.append(f"{buffered} bytes")
        if self._core.eof:
            info.append("eof")
        if self._limit != DEFAULT_LIMIT:
            info.append(f"limit={self._limit}")
        if self._waiter:
            info.append(f"waiter={self._waiter!r}")
        if self._exception:
            info.append(f"exception={self._exception!r}")
        if self._transport:
            info.append(f"transport={self._transport!r}")
        if self._source is not None:
            info.append(f"source={self._source!r}")
        if self._paused:
            info.append("paused")
        return "<{}>".format(" ".join(info))


#: ``trio.lowlevel`` and ``outcome``, bound at the first wait on trio (so a
#: reader on asyncio never imports trio, and a wait on trio imports nothing).
_trio_lowlevel: Any = None
_outcome: Any = None


def _bind_trio() -> Any:
    """Import ``trio.lowlevel`` and ``outcome`` once; return ``trio.lowlevel``."""
    global _trio_lowlevel, _outcome
    import outcome
    import trio

    _outcome = outcome
    _trio_lowlevel = trio.lowlevel
    return _trio_lowlevel


def _reschedule(task: Any, exc: BaseException | None) -> None:
    """Wake a task parked by :meth:`StreamReader._wait_for_data` on trio."""
    _trio_lowlevel.reschedule(
        task, _outcome.Value(None) if exc is None else _outcome.Error(exc)
    )
