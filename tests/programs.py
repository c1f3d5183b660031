"""Real programs and client libraries the interop tests talk to.

Locally, a missing program (looked up on ``PATH``) or library (an import)
skips its tests with a message that says what to install. In CI
(``PORTASTREAMS_REQUIRE_PROGRAMS=1``, set by ``.ci/run``, which installs the
programs; the nox session installs the ``interop`` extra) a missing one is a
failure: interop tests are never skipped there.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import Final, NoReturn

import pytest

#: Set by .ci/run: every program must be present, nothing may skip.
REQUIRE_ENV: Final = "PORTASTREAMS_REQUIRE_PROGRAMS"


def require_program(program: str, package: str) -> str:
    """Return the path of ``program``; skip (locally) or fail (CI) without it.

    ``package`` is the Debian/Ubuntu package that provides it.
    """
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        _missing(
            f"{program!r} is not installed: install it with "
            f"'apt-get install -y {package}' (or your system's package manager)"
        )
    return path


def require_module(name: str) -> ModuleType:
    """Import and return module ``name``; skip (locally) or fail (CI) without it.

    The interop libraries come with the ``interop`` extra.
    """
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        _missing(
            f"{name!r} cannot be imported ({exc}): install the interop libraries "
            "with: pip install -e '.[test,interop]'"
        )
    return module


def _missing(message: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{message}; {REQUIRE_ENV} is set, so interop tests may not skip")
    pytest.skip(message)
