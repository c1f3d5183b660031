"""A deadline for every async test, so that a bug makes a test fail instead of hang.

A pytest plugin, loaded by ``tests/conftest.py``. Every coroutine test that
AnyIO's pytest plugin runs (each backend; each Hypothesis example) runs inside
``anyio.fail_after(async_test_deadline)``. When the deadline passes, the test's
task is cancelled like any other timeout: the backend's event loop stays
usable for the following tests, the test fails with a message naming the
deadline, and the chained traceback shows the ``await`` the test was stuck in.

That cannot stop code that blocks the event loop itself (a blocking call, a
busy loop) or a hang outside the test function (a fixture, a shielded scope).
pytest-timeout's ``timeout`` (set in ``pyproject.toml``, larger than this
deadline) is the backstop for those, and for synchronous tests.

The deadline is the ``async_test_deadline`` ini option (seconds), e.g.
``python -m pytest -o async_test_deadline=5``; a test may take a different one
with ``@pytest.mark.deadline(seconds)``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final

import anyio
import pytest

#: The deadline when the ini file sets none, in seconds.
DEFAULT_DEADLINE: Final = 60.0

#: Where a wrapper keeps the test function it wraps.
_ORIGINAL: Final = "_portastreams_deadline_original"
#: What AnyIO's plugin calls the function it wraps for Hypothesis.
_ANYIO_ORIGINAL: Final = "_anyio_original_func"

AsyncTest = Callable[..., Awaitable[Any]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "async_test_deadline",
        "seconds an async test (or one Hypothesis example) may run before it fails",
        default=str(DEFAULT_DEADLINE),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deadline(seconds): this async test's deadline instead of async_test_deadline",
    )


def deadline_for(item: pytest.Function) -> float:
    """The deadline of ``item``: its ``deadline`` marker, else the ini option."""
    marker = item.get_closest_marker("deadline")
    if marker is not None:
        return float(marker.args[0])
    return float(str(item.config.getini("async_test_deadline")))


def with_deadline(test: AsyncTest, seconds: float, name: str) -> AsyncTest:
    """Return ``test`` wrapped in ``anyio.fail_after(seconds)``.

    Only the wrapper's own deadline becomes a test failure; a ``TimeoutError``
    the test raises by itself propagates unchanged.
    """
    original: AsyncTest = getattr(test, _ORIGINAL, test)

    @functools.wraps(original)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        scope: anyio.CancelScope | None = None
        try:
            with anyio.fail_after(seconds) as scope:
                return await original(*args, **kwargs)
        except TimeoutError as exc:
            if scope is not None and scope.cancelled_caught:
                message = (
                    f"{name} did not finish within its {seconds:g} s deadline "
                    "(async_test_deadline); the traceback above shows where it waited"
                )
                raise pytest.fail.Exception(message) from exc
            raise

    setattr(guarded, _ORIGINAL, original)
    return guarded


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    """Put the deadline around the test before AnyIO's plugin runs it."""
    if "anyio_backend" not in pyfuncitem.funcargs:
        return (yield)
    seconds = deadline_for(pyfuncitem)
    hypothesis = getattr(pyfuncitem.obj, "hypothesis", None)
    if hypothesis is not None:
        # One deadline per example: AnyIO's plugin wraps ``inner_test`` (and
        # unwraps its previous wrapper first), so wrap what it will run.
        inner = hypothesis.inner_test
        inner = getattr(inner, _ANYIO_ORIGINAL, inner)
        if inspect.iscoroutinefunction(getattr(inner, _ORIGINAL, inner)):
            hypothesis.inner_test = with_deadline(inner, seconds, pyfuncitem.nodeid)
        return (yield)
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return (yield)
    pyfuncitem.obj = with_deadline(test, seconds, pyfuncitem.nodeid)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = test
