"""What a server process reports about itself: fds, tasks, memory, CPU, logs.

Everything here works while the process is out of file descriptors (the
resource-exhaustion experiment): memory is sampled through a file opened in
advance, and counting descriptors only reports ``None`` when it cannot open
``/proc/self/fd``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
import threading
import warnings
from collections import Counter
from typing import Any, Final

#: How often the memory sampler looks at the resident set size.
SAMPLE_INTERVAL: Final = 0.005
#: How many log messages a server keeps (the counts cover them all).
KEPT_MESSAGES: Final = 200

_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")


def fd_count() -> int | None:
    """Open file descriptors of this process; None if none is left to look."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus listdir's own
    except OSError:
        return None


def task_count(backend: str) -> int:
    """Every task of the running event loop (asyncio) or run (trio)."""
    if backend != "trio":
        return len(asyncio.all_tasks())
    import trio

    root = trio.lowlevel.current_root_task()
    assert root is not None
    count = 0
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MemorySampler:
    """A thread that samples RSS every few milliseconds and keeps the peak.

    ``/proc/self/statm`` is opened once, so sampling needs no new descriptor.
    """

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        self._lock = threading.Lock()
        self._peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="stress memory sampler", daemon=True
        )
        self._thread.start()

    def rss(self) -> int:
        """The resident set size now, in bytes."""
        fields = os.pread(self._fd, 128, 0).split()
        return int(fields[1]) * _PAGE_SIZE

    def peak(self) -> int:
        with self._lock:
            return max(self._peak, self.rss())

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self.rss()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            rss = self.rss()
            with self._lock:
                if rss > self._peak:
                    self._peak = rss

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)


#: asyncio's own warning for a handler that keeps writing to a connection its
#: client has left (``write()`` after the loss, without ``drain()``). Every
#: server on asyncio's transports logs it, asyncio's own ``start_server``
#: included; it is not portastreams' doing, so it is counted apart.
ASYNCIO_WRITE_AFTER_LOSS = "socket.send() raised exception."


def log_key(record: logging.LogRecord) -> str:
    """``logger/LEVEL``; asyncio's write-after-loss warning under a key of its own."""
    if record.name == "asyncio" and record.getMessage() == ASYNCIO_WRITE_AFTER_LOSS:
        return "asyncio/write-after-loss"
    return f"{record.name}/{record.levelname}"


class LogCounter(logging.Handler):
    """Counts every log record by ``logger/LEVEL`` and keeps the first messages.

    Installed on the root logger at DEBUG, with ``logging.captureWarnings``
    (so ``ResourceWarning`` shows up as ``py.warnings/WARNING``) and with
    ``sys.unraisablehook`` reporting as ``unraisable/ERROR``.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        key = log_key(record)
        self.counts[key] += 1
        if len(self.messages) < KEPT_MESSAGES:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f" [{type(exc).__name__}: {exc}]"
            self.messages.append(f"{key}: {text}")

    def reset(self) -> None:
        self.counts.clear()
        self.messages.clear()

    def install(self) -> None:
        root = logging.getLogger()
        root.setLevel(logging.DEBUG)
        root.addHandler(self)
        warnings.simplefilter("default")
        logging.captureWarnings(True)
        unraisable_logger = logging.getLogger("unraisable")

        def unraisable(info: Any) -> None:
            unraisable_logger.error(
                "%s: %r",
                info.err_msg or "Exception ignored in",
                info.object,
                exc_info=(info.exc_type, info.exc_value, info.exc_traceback),
            )

        sys.unraisablehook = unraisable

    def as_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "messages": list(self.messages)}
