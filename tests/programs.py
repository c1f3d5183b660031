"""Real programs the interop tests talk to, found on ``PATH``.

Locally, a missing program skips its tests with a message that says what to
install. In CI (``PORTASTREAMS_REQUIRE_PROGRAMS=1``, set by ``.ci/run``,
which installs them) a missing program is a failure: interop tests are never
skipped there.
"""

from __future__ import annotations

import os
import shutil
from typing import Final

import pytest

#: Set by .ci/run: every program must be present, nothing may skip.
REQUIRE_ENV: Final = "PORTASTREAMS_REQUIRE_PROGRAMS"


def require_program(program: str, package: str) -> str:
    """Return the path of ``program``; skip (locally) or fail (CI) without it.

    ``package`` is the Debian/Ubuntu package that provides it.
    """
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is not None:
        return path
    message = (
        f"{program!r} is not installed: install it with "
        f"'apt-get install -y {package}' (or your system's package manager)"
    )
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{message}; {REQUIRE_ENV} is set, so interop tests may not skip")
    pytest.skip(message)
