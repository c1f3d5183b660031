"""The backends tests run on: every test on all three, unless it is about one by nature."""

from __future__ import annotations

import asyncio
import sys

import pytest

#: asyncio, asyncio + uvloop and trio, as ``anyio_backend`` values.
BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]

#: For tests about asyncio by nature (asyncio protocols and transports).
ASYNCIO_BACKENDS = BACKENDS[:2]

#: For tests about trio by nature.
TRIO_BACKEND = BACKENDS[2:]


def running_task_names() -> set[str]:
    """The names of the tasks running now, on asyncio or trio."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        root = trio.lowlevel.current_root_task()
        names: set[str] = set()
        pending = [root]
        while pending:
            task = pending.pop()
            names.add(task.name)
            for nursery in task.child_nurseries:
                pending.extend(nursery.child_tasks)
        return names
    return {task.get_name() for task in asyncio.all_tasks()}
