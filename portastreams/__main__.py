"""``python -m portastreams``: ``demo``, ``echo-server`` and ``cat`` (see :mod:`portastreams._cli`).

The installed ``portastreams`` console script calls :func:`main` directly.
"""

from __future__ import annotations

import sys

from ._cli import MODULE_COMMAND, main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(prog=MODULE_COMMAND))
