"""One receive buffer per thread, for receives whose bytes are copied out at once.

A receive of a new ``bytes`` object allocates what it may bring in, and at
256 KiB every allocation is an ``mmap``/``munmap`` pair; a receive into a
reused buffer allocates nothing. Sharing one buffer between all the
connections of a thread's event loop is safe when the bytes leave it in the
same synchronous step that brought them in (``recv_into`` then a feed that
copies them), so memory stays one buffer per thread, not one per connection.
"""

from __future__ import annotations

import threading

__all__ = ["thread_receive_view"]

_per_thread = threading.local()


def thread_receive_view(size: int) -> memoryview:
    """The running thread's receive buffer of ``size`` bytes (one per size)."""
    try:
        views: dict[int, memoryview] = _per_thread.views
    except AttributeError:
        views = _per_thread.views = {}
    view = views.get(size)
    if view is None:
        view = views[size] = memoryview(bytearray(size))
    return view
