"""AnyIO's stream errors become the builtin ``OSError`` that asyncio code catches.

``connection_error_from`` is the one place that maps them; asyncio's streams
raise the socket's own ``OSError``, so the mapped error must be that error:
the same class, ``errno``, ``strerror`` and message. These are unit tests
without an event loop.
"""

from __future__ import annotations

import errno

import anyio
import pytest

from portastreams._exceptions import connection_error_from


def broken(cause: BaseException | None, *, implicit: bool = False) -> Exception:
    """A ``BrokenResourceError`` raised from ``cause`` (or during it, if ``implicit``)."""
    error = anyio.BrokenResourceError()
    if implicit:
        error.__context__ = cause
    else:
        error.__cause__ = cause
    return error


def same_error(actual: OSError, expected: OSError) -> None:
    assert type(actual) is type(expected)
    assert (actual.errno, actual.strerror, str(actual), actual.args) == (
        expected.errno,
        expected.strerror,
        str(expected),
        expected.args,
    )


@pytest.mark.parametrize(
    "cause",
    [
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort"),
        TimeoutError(errno.ETIMEDOUT, "Connection timed out"),
    ],
    ids=lambda exc: type(exc).__name__,
)
@pytest.mark.parametrize("implicit", [False, True], ids=["cause", "context"])
def test_the_socket_error_comes_back(cause: OSError, implicit: bool) -> None:
    mapped = connection_error_from(broken(cause, implicit=implicit))
    same_error(mapped, cause)
    assert mapped is not cause  # a fresh error: the caller chains the AnyIO one


@pytest.mark.parametrize(
    "cause",
    [
        ConnectionResetError("reset while reading"),
        OSError("no errno"),
        BrokenPipeError(),
    ],
    ids=["message", "oserror", "bare"],
)
def test_an_error_without_errno_keeps_its_arguments(cause: OSError) -> None:
    mapped = connection_error_from(broken(cause))
    same_error(mapped, cause)
    assert mapped.errno is None


def test_an_errno_without_strerror_keeps_its_message() -> None:
    cause = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    cause.strerror = None
    mapped = connection_error_from(broken(cause))
    assert type(mapped) is ConnectionResetError
    assert mapped.errno == errno.ECONNRESET
    assert mapped.strerror == str(cause)


def test_an_oserror_is_returned_as_it_is() -> None:
    error = BrokenPipeError(errno.EPIPE, "Broken pipe")
    assert connection_error_from(error) is error


def test_a_closed_stream_is_a_broken_pipe() -> None:
    mapped = connection_error_from(anyio.ClosedResourceError())
    assert type(mapped) is BrokenPipeError
    assert str(mapped) == "the stream was closed"


def test_a_failure_without_a_cause_is_a_reset_naming_it() -> None:
    error = anyio.BrokenResourceError("peer vanished")
    mapped = connection_error_from(error)
    assert type(mapped) is ConnectionResetError
    assert str(mapped) == f"Connection lost: {error!r}"
