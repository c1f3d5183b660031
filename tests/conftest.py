"""Every async test runs on asyncio, asyncio + uvloop and trio."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from backends import BACKENDS
from hypothesis import HealthCheck, settings
from sockets import Kind

#: Every async test gets a deadline (tests/deadlines.py).
pytest_plugins = ["deadlines"]

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=30, deadline=None)
# Beyond CI (nox -s fuzz): at least 100,000 examples per property by default.
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100000")),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture
def backend_name(anyio_backend: tuple[str, dict[str, Any]]) -> str:
    """``asyncio``, ``uvloop`` or ``trio``: which backend this test runs on."""
    name, options = anyio_backend
    return "uvloop" if options.get("use_uvloop") else name


@pytest.fixture(params=["tcp", "unix"])
def kind(request: pytest.FixtureRequest) -> Kind:
    """The socket family a connection test runs over."""
    return cast("Kind", request.param)


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, or a shorter temporary directory if a socket path would not fit."""
    if len(str(tmp_path / "a-socket-file-name.sock")) < 100:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="ps-"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)
