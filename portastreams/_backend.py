"""The little portastreams needs to know about the running backend.

asyncio's stream API has operations that are synchronous yet start I/O that
outlives the call (``write()`` transmits without ``drain()``, ``close()``
flushes then closes). Under structured concurrency nobody owns such work, so
it runs in a *detached* task: an ``asyncio`` task on asyncio (kept referenced
until it ends, as asyncio's own transports keep their callbacks), a trio
*system task* on trio. A detached task must never raise: it reports failures
through the object that started it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Literal

__all__ = ["Backend", "running_backend", "spawn_detached"]

Backend = Literal["asyncio", "trio"]

# Detached asyncio tasks, referenced until they finish so that the event loop's
# weak references do not let them be collected mid-flight.
_asyncio_tasks: set[asyncio.Task[None]] = set()


def running_backend() -> Backend:
    """Return which event loop runs the current task.

    Raises ``RuntimeError`` outside of any event loop.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return "trio"
    asyncio.get_running_loop()  # raises RuntimeError when there is none
    return "asyncio"


def spawn_detached(
    backend: Backend, async_fn: Callable[[], Awaitable[None]], name: str
) -> None:
    """Run ``async_fn()`` in a task that no task group owns.

    The task ends with the event loop at the latest (asyncio cancels pending
    tasks at ``asyncio.run`` exit; trio cancels system tasks when the main task
    returns). ``async_fn`` must handle its own exceptions.
    """
    if backend == "trio":
        import trio

        trio.lowlevel.spawn_system_task(async_fn, name=name)
        return

    async def run() -> None:
        await async_fn()

    task = asyncio.get_running_loop().create_task(run(), name=name)
    _asyncio_tasks.add(task)
    task.add_done_callback(_asyncio_tasks.discard)
