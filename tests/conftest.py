"""Every async test runs on asyncio, asyncio + uvloop and trio."""

from __future__ import annotations

import os
from typing import Any

import pytest
from backends import BACKENDS
from hypothesis import settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=300, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=30, deadline=None)
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
