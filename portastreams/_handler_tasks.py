"""The tasks that run a server's connection handlers.

On trio a handler is a task of the server's task group. On asyncio an AnyIO
task costs about 3 KiB per connection more than the plain ``asyncio.Task``
asyncio's own server starts (a task handle, its cancel scope, an
``asyncio.Event`` with its deque, weak references), which on an idle server
is most of the memory a connection takes. There, handlers are plain asyncio
tasks, owned the structured way all the same: one *supervisor* task in the
server's task group returns only once the server is closed and every handler
has finished; if the group is cancelled, the supervisor cancels the handlers
-- again at each of their awaits, as a cancelled AnyIO scope would, until
they end -- and waits for them; a handler that raises a ``BaseException``
(``KeyboardInterrupt``, ``SystemExit``) ends the group with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup

from ._backend import Backend

__all__ = ["HandlerTasks"]

#: While the supervisor waits for cancelled handlers, how often it cancels
#: those still running again (a handler may catch one cancellation).
RECANCEL_INTERVAL: Final = 0.05

Handler = Callable[[Any], Coroutine[Any, Any, None]]


class HandlerTasks:
    """Starts handler tasks for a server served in ``task_group``."""

    def __init__(
        self, backend: Backend, task_group: TaskGroup, closed: Callable[[], bool]
    ) -> None:
        self._task_group = task_group
        self._native = backend == "asyncio"
        self._closed = closed
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup: asyncio.Future[None] | None = None
        self._crash: BaseException | None = None
        if self._native:
            task_group.start_soon(self._supervise, name="portastreams handlers")

    def start(self, handler: Handler, argument: Any) -> None:
        """Run ``handler(argument)`` in a new task the server owns."""
        if not self._native:
            self._task_group.start_soon(handler, argument)
            return
        task = asyncio.get_running_loop().create_task(
            handler(argument), name="portastreams handler"
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def server_closed(self) -> None:
        """The server was closed: the supervisor may end once handlers have."""
        self._wake()

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
