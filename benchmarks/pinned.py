"""``python -m benchmarks.pinned CPU PROGRAM [ARGS...]``: run a program pinned to one CPU.

Pins itself with ``os.sched_setaffinity`` and replaces itself with the
program (``os.execvp``), which inherits the affinity: the load generators are
C programs without a pinning option of their own, and this needs nothing
beyond Python (no ``taskset``).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:  # noqa: RET503
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(
            "usage: python -m benchmarks.pinned CPU PROGRAM [ARGS...]", file=sys.stderr
        )
        return 2
    os.sched_setaffinity(0, {int(args[0])})
    os.execvp(args[1], args[1:])  # returns only by raising OSError


if __name__ == "__main__":
    sys.exit(main())
