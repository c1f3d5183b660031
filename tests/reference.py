"""Run a scenario on CPython's own asyncio streams, from a test on any backend.

The contract is "what CPython's ``asyncio.streams`` does", so a test that can
ask CPython asks it, in the same run, instead of typing the answer in. The
scenario runs on a fresh ``asyncio.SelectorEventLoop`` (never uvloop) in a
worker thread, so a trio or uvloop test can consult it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

#: The most a reference scenario may take.
REFERENCE_TIMEOUT: Final = 20.0


def run_on_asyncio(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``scenario()`` to completion on a new CPython selector event loop."""
    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(scenario(), REFERENCE_TIMEOUT))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def on_asyncio(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """What ``scenario()`` returns on CPython's asyncio (run in a worker thread)."""
    return await anyio.to_thread.run_sync(run_on_asyncio, scenario)


def outcome(exc: BaseException) -> tuple[str, str]:
    """An exception as a comparable value: its builtin class name and message."""
    return (type(exc).__name__, str(exc))
