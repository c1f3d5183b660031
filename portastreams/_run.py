"""Run a coroutine function on a backend named the way people say it.

``asyncio``, ``uvloop`` (asyncio on a uvloop event loop) and ``trio`` map to
``anyio.run()`` arguments. Used by the command line (``python -m
portastreams``); examples spell the same three lines out with plain
``anyio.run`` so that they only use the public API.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import anyio

__all__ = [
    "BACKENDS",
    "anyio_backend",
    "available_backends",
    "install_hint",
    "is_available",
    "not_installed",
    "run",
]

T = TypeVar("T")

#: ``anyio.run(backend=..., backend_options=...)`` for each backend name.
BACKENDS: Final[Mapping[str, tuple[str, Mapping[str, Any]]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}

#: The module each backend needs, beyond the standard library; it is also the
#: name of its distribution and of portastreams' extra that installs it.
_REQUIRES: Final[Mapping[str, str]] = {"uvloop": "uvloop", "trio": "trio"}


def anyio_backend(name: str) -> tuple[str, dict[str, Any]]:
    """Return ``(backend, backend_options)`` for ``anyio.run``; ``ValueError`` if unknown."""
    try:
        backend, options = BACKENDS[name]
    except KeyError:
        known = ", ".join(BACKENDS)
        raise ValueError(f"unknown backend {name!r} (known: {known})") from None
    return backend, dict(options)


def is_available(name: str) -> bool:
    """True when backend ``name`` can run here (its package is installed)."""
    anyio_backend(name)
    module = _REQUIRES.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def install_hint(name: str) -> str:
    """How to install backend ``name``, e.g. ``pip install trio (portastreams' [trio] extra)``.

    Empty for asyncio, which needs nothing beyond the standard library.
    """
    anyio_backend(name)
    package = _REQUIRES.get(name)
    if package is None:
        return ""
    return f"pip install {package} (portastreams' [{package}] extra)"


def not_installed(name: str) -> str:
    """The message for a backend that is not installed, with its install hint."""
    return f"backend {name!r} is not installed; install it with: {install_hint(name)}"


def available_backends() -> list[str]:
    """The backends installed here, in the order asyncio, uvloop, trio."""
    return [name for name in BACKENDS if is_available(name)]


def run(main: Callable[[], Awaitable[T]], backend: str = "asyncio") -> T:
    """``anyio.run(main)`` on the named backend; returns what ``main`` returns.

    Pass arguments with ``functools.partial``. Raises ``ValueError`` for an
    unknown name and ``RuntimeError`` for a backend that is not installed.
    """
    name, options = anyio_backend(backend)
    if not is_available(backend):
        raise RuntimeError(not_installed(backend))
    return anyio.run(main, backend=name, backend_options=options)
