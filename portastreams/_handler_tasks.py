"""The tasks that run a server's connection handlers.

An AnyIO task costs more per connection than the backend's own: a task
handle, its cancel scope (on trio, an AnyIO scope around trio's), on asyncio
an ``asyncio.Event`` with its deque -- about 3 KiB on asyncio, 1 KiB on trio,
which on an idle server is a good part of the memory a connection takes. So
handlers are the backend's own tasks, owned the structured way all the same:

* On trio they are tasks of a trio nursery that one task of the server's
  task group holds open until the server is closed; the nursery then waits
  for the last handler, and cancellation and errors propagate as in any
  nursery.
* On asyncio they are plain ``asyncio.Task`` objects, as asyncio's own server
  starts them. One *supervisor* task in the server's task group returns only
  once the server is closed and every handler has finished; if the group is
  cancelled, the supervisor cancels the handlers -- again at each of their
  awaits, as a cancelled AnyIO scope would, until they end -- and waits for
  them; a handler that raises a ``BaseException`` (``KeyboardInterrupt``,
  ``SystemExit``) ends the group with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._backend import Backend

__all__ = ["HandlerTasks"]

#: While the supervisor waits for cancelled handlers, how often it cancels
#: those still running again (a handler may catch one cancellation).
RECANCEL_INTERVAL: Final = 0.05

Handler = Callable[[Any], Coroutine[Any, Any, None]]


class HandlerTasks:
    """Starts handler tasks for a server served in ``task_group``.

    :meth:`open` (once, before :meth:`start`) starts the task that owns them.
    """

    def __init__(
        self, backend: Backend, task_group: TaskGroup, closed: Callable[[], bool]
    ) -> None:
        self._task_group = task_group
        self._native = backend == "asyncio"
        self._closed = closed
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup: asyncio.Future[None] | None = None
        self._crash: BaseException | None = None
        self._nursery: Any = None  # trio's
        self._nursery_closing: Any = None  # a trio.Event

    async def open(self) -> None:
        """Start the task that owns the handlers (returns once it can take them)."""
        if self._native:
            self._task_group.start_soon(self._supervise, name="portastreams handlers")
        else:
            await self._task_group.start(
                self._hold_nursery, name="portastreams handlers"
            )

    def start(self, handler: Handler, argument: Any) -> None:
        """Run ``handler(argument)`` in a new task the server owns."""
        if not self._native:
            self._nursery.start_soon(handler, argument, name="portastreams handler")
            return
        task = asyncio.get_running_loop().create_task(
            handler(argument), name="portastreams handler"
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def server_closed(self) -> None:
        """The server was closed: the owner may end once handlers have."""
        if self._nursery_closing is not None:
            self._nursery_closing.set()
        self._wake()

    async def _hold_nursery(self, *, task_status: TaskStatus[None]) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            closing = self._nursery_closing = trio.Event()
            if self._closed():
                closing.set()
            task_status.started()
            await closing.wait()
        # (The nursery has waited for the last handler.)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and self._crash is None:
                # Handlers catch Exceptions; what reaches here ends the
                # server, as it would end a task group.
                self._crash = exc
        if not self._tasks or self._crash is not None:
            self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._crash is None and not (self._closed() and not self._tasks):
                self._wakeup = loop.create_future()
                await self._wakeup
        except BaseException:
            await self._cancel_all()
            raise
        finally:
            self._wakeup = None
        if self._crash is not None:
            await self._cancel_all()
            raise self._crash

    async def _cancel_all(self) -> None:
        with anyio.CancelScope(shield=True):
            while self._tasks:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.wait(list(self._tasks), timeout=RECANCEL_INTERVAL)
