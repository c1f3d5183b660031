"""What the socket tests share: the kinds of socket, and file descriptor counting."""

from __future__ import annotations

import os
from typing import Literal

#: Every connection test runs over loopback TCP and over a Unix socket.
Kind = Literal["tcp", "unix"]


def fd_count() -> int:
    """The number of file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))
