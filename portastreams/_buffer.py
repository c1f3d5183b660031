"""The sans-I/O core of the reader: a byte buffer and asyncio's read rules.

:class:`ReadBuffer` knows nothing about sockets, tasks or event loops. It
holds the bytes received but not yet read, whether the end of the stream has
been seen, and the reader's ``limit``. Each ``*_step`` method answers one
question -- "can this read be completed with what is buffered now?" -- and
either consumes and returns the result, raises the exception CPython's
``asyncio.StreamReader`` would raise in the same state, or returns ``None`` to
say that more data (or the end of the stream) is needed. The I/O layer
(:mod:`portastreams._reader`) loops: step, and if ``None``, wait for data and
step again.

The rules, offsets and messages follow CPython 3.13's ``asyncio/streams.py``
exactly, because the exception attributes (``LimitOverrunError.consumed``)
depend on how far the search had got when the limit was hit.
"""

from __future__ import annotations

from typing import Final

from ._exceptions import IncompleteReadError, LimitOverrunError

__all__ = ["ReadBuffer", "SeparatorSearch"]


class ReadBuffer:
    """Bytes received and not yet consumed, plus the end-of-stream flag.

    ``data`` is the one bytearray for the buffer's whole life (it is emptied
    in place, never replaced), so a caller may keep a reference to it.
    """

    __slots__ = ("data", "eof", "limit")

    def __init__(self, limit: int) -> None:
        self.data: Final = bytearray()
        self.eof = False
        self.limit = limit

    def take(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes (fewer if fewer are held)."""
        data = self.data
        if n >= len(data):
            chunk = bytes(data)
            data.clear()
            return chunk
        chunk = bytes(data[:n])
        del data[:n]
        return chunk

    def readexactly_step(self, n: int) -> bytes | None:
        """``readexactly(n)``: exactly ``n`` bytes, or ``IncompleteReadError`` at EOF.

        At EOF the partial data leaves the buffer inside the exception, as in
        asyncio.
        """
        if len(self.data) >= n:
            return self.take(n)
        if self.eof:
            raise IncompleteReadError(self.take(len(self.data)), n)
        return None


class SeparatorSearch:
    """The state of one ``readuntil`` call: its separators and how far it looked.

    ``offset`` is the number of leading buffer bytes known not to contain the
    start of any separator, so each new chunk is scanned once (plus the
    ``max_len - 1`` bytes a separator may straddle).
    """

    __slots__ = ("max_len", "min_len", "offset", "separators")

    def __init__(self, separator: bytes | tuple[bytes, ...]) -> None:
        if isinstance(separator, tuple):
            # Sorted by length so that, for matches ending at the same place,
            # the shorter separator wins, as in CPython.
            separators = sorted(separator, key=_checked_len)
        else:
            _checked_len(separator)
            separators = [separator]
        if not separators:
            raise ValueError("Separator should contain at least one element")
        self.separators = separators
        self.min_len = len(separators[0])
        self.max_len = len(separators[-1])
        if self.min_len == 0:
            raise ValueError("Separator should be at least one-byte string")
        self.offset = 0

    @classmethod
    def resumed(cls, separator: bytes, offset: int) -> SeparatorSearch:
        """The search for one non-empty bytes ``separator``, ``offset`` bytes in.

        For a search begun elsewhere (the reader's inline loop for the common
        case), continued here from where it had got.
        """
        search = cls.__new__(cls)
        search.separators = [separator]
        search.min_len = search.max_len = len(separator)
        search.offset = offset
        return search

    def step(self, buffer: ReadBuffer) -> int | None:
        """Return where the earliest-ending match ends, or ``None`` if more data is needed.

        Raises ``LimitOverrunError`` (data stays buffered) when the separator
        is found beyond ``limit`` or ``limit`` bytes have been searched
        without finding it, and ``IncompleteReadError`` (buffer emptied into
        ``partial``) at EOF without a match.
        """
        data = buffer.data
        buflen = len(data)
        if buflen - self.offset >= self.min_len:
            match_start = -1
            match_end = -1
            separators = self.separators
            if len(separators) == 1:
                sep = separators[0]
                match_start = data.find(sep, self.offset)
                if match_start != -1:
                    match_end = match_start + len(sep)
            else:
                for sep in separators:
                    start = data.find(sep, self.offset)
                    if start != -1:
                        end = start + len(sep)
                        if match_end == -1 or end < match_end:
                            match_end = end
                            match_start = start
            if match_end != -1:
                if match_start > buffer.limit:
                    raise LimitOverrunError(
                        "Separator is found, but chunk is longer than limit",
                        match_start,
                    )
                return match_end
            self.offset = max(0, buflen + 1 - self.max_len)
            if self.offset > buffer.limit:
                raise LimitOverrunError(
                    "Separator is not found, and chunk exceed the limit", self.offset
                )
        if buffer.eof:
            raise IncompleteReadError(buffer.take(buflen), None)
        return None


def _checked_len(separator: object) -> int:
    if not isinstance(separator, (bytes, bytearray, memoryview)):
        raise TypeError(
            "separator must be bytes or a tuple of bytes, "
            f"not {type(separator).__name__}"
        )
    return len(separator)
