"""The exceptions portastreams raises, and the mapping from AnyIO's errors.

:class:`IncompleteReadError` and :class:`LimitOverrunError` subclass asyncio's
own classes (and AnyIO's ``IncompleteRead`` / ``DelimiterNotFound``), so code
written against either library keeps catching them. Their messages and
attributes are CPython's.

Connection failures reported by AnyIO as ``BrokenResourceError`` are turned
into the builtin ``OSError`` subclasses asyncio code catches
(``ConnectionResetError``, ``BrokenPipeError``, ...), with the AnyIO error as
``__cause__``.
"""

from __future__ import annotations

import asyncio

import anyio

__all__ = ["IncompleteReadError", "LimitOverrunError"]


class IncompleteReadError(asyncio.IncompleteReadError, anyio.IncompleteRead):
    """The stream ended before the requested bytes or separator arrived.

    ``partial`` holds the bytes read before the end of the stream (they are no
    longer in the reader's buffer); ``expected`` is the number of bytes asked
    for, or ``None`` when reading until a separator.
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        asyncio.IncompleteReadError.__init__(self, partial, expected)


class LimitOverrunError(asyncio.LimitOverrunError, anyio.DelimiterNotFound):
    """A separator was not found within the reader's ``limit``.

    ``consumed`` is the number of bytes that would have to be consumed to make
    progress; the data stays in the reader's buffer.
    """

    def __init__(self, message: str, consumed: int) -> None:
        # Not asyncio's __init__: its super() call would reach AnyIO's
        # DelimiterNotFound.__init__, which rewrites the message.
        Exception.__init__(self, message)
        self.consumed = consumed


def connection_error_from(exc: BaseException) -> OSError:
    """Return the builtin ``OSError`` that stands for an AnyIO stream failure.

    An ``OSError`` is returned as it is. AnyIO's ``BrokenResourceError`` (and
    ``ClosedResourceError`` seen on a write) become the ``OSError`` they were
    caused by, or a ``ConnectionResetError`` when AnyIO gives no cause; the
    caller raises the result ``from exc`` so the AnyIO error stays visible.
    """
    if isinstance(exc, OSError):
        return exc
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError):
        if cause.errno is not None:
            return type(cause)(cause.errno, cause.strerror or str(cause))
        return type(cause)(*cause.args)
    if isinstance(exc, anyio.ClosedResourceError):
        return BrokenPipeError("the stream was closed")
    return ConnectionResetError(f"Connection lost: {exc!r}")
