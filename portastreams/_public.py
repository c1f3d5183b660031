"""How the public names present themselves: ``portastreams.X``, and a readable ``help()``.

The public classes and functions are defined in private modules
(``portastreams._reader`` ...). :func:`present` makes them say
``portastreams`` instead, where people read it: tracebacks
(``portastreams.IncompleteReadError: ...``), reprs (``<class
'portastreams.StreamReader'>``), pickles and ``help()``. It also gives the
members the public classes inherit from AnyIO a one-line docstring of their
own, so that ``help(portastreams)`` does not reprint AnyIO's docstrings, with
their Sphinx markup, once per class.

Only metadata changes: no behaviour, and no cost on any call.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, MutableMapping
from typing import Any, Final

__all__ = ["present", "restore_defining_modules"]

#: Every object :func:`present` gave a new ``__module__``, with its old one.
_RENAMED: Final[list[tuple[Any, str]]] = []

#: Where the inherited members that get a docstring of their own come from.
_FOREIGN_PACKAGE: Final = "anyio"


def present(
    package: str, namespace: MutableMapping[str, Any], names: Iterable[str]
) -> None:
    """Show each of ``names`` (from ``namespace``) as ``package.<name>``.

    Classes and functions defined in ``package``'s private modules get
    ``__module__ = package``, and so do the functions and properties defined
    in those classes. Names defined elsewhere are left alone.
    """
    for name in names:
        value = namespace[name]
        module = getattr(value, "__module__", None)
        if not isinstance(module, str) or not module.startswith(package + "."):
            continue
        _rename(value, package)
        if isinstance(value, type):
            _present_members(package, value)
            _own_foreign_docstrings(package, value)


def restore_defining_modules() -> None:
    """Undo :func:`present`'s renaming (``help()``'s docstrings stay).

    For the documentation build: Sphinx finds a class's source, and the
    order of its members, through ``__module__``.
    """
    while _RENAMED:
        value, module = _RENAMED.pop()
        value.__module__ = module


def _rename(value: Any, package: str) -> None:
    _RENAMED.append((value, value.__module__))
    value.__module__ = package


def _present_members(package: str, cls: type) -> None:
    for member in vars(cls).values():
        for function in _functions_of(member):
            if getattr(function, "__module__", "").startswith(package + "."):
                _rename(function, package)


def _functions_of(member: object) -> list[Any]:
    if isinstance(member, (staticmethod, classmethod)):
        return [member.__func__]
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if f is not None]
    if isinstance(member, types.FunctionType):
        return [member]
    return []


def _own_foreign_docstrings(package: str, cls: type) -> None:
    """Give ``cls`` its own short docstring for members documented by AnyIO.

    A method ``cls`` inherits from an AnyIO class becomes a copy of that
    function (same code, defaults and globals: it behaves identically)
    defined on ``cls`` with a docstring pointing to AnyIO's; a property
    ``cls`` defines without a docstring, which ``help()`` would fill in from
    AnyIO's, gets that pointer as its docstring.
    """
    for name in dir(cls):
        if name.startswith("_"):  # help() shows no private names
            continue
        owner = next(base for base in cls.__mro__ if name in vars(base))
        member = vars(owner)[name]
        if owner is cls:
            if isinstance(member, property) and member.__doc__ is None:
                origin = _foreign_origin(cls, name)
                if origin is not None:
                    member.__doc__ = _pointer(origin, name)
            continue
        if _is_foreign(owner) and isinstance(member, types.FunctionType):
            setattr(
                cls, name, _documented_copy(member, cls, package, _pointer(owner, name))
            )


def _foreign_origin(cls: type, name: str) -> type | None:
    """The first AnyIO class after ``cls`` in its MRO that defines ``name``."""
    for base in cls.__mro__[1:]:
        if name in vars(base):
            return base if _is_foreign(base) else None
    return None


def _is_foreign(cls: type) -> bool:
    # AnyIO renames its classes' __module__ to "anyio" lazily, on first access.
    module = cls.__module__
    return module == _FOREIGN_PACKAGE or module.startswith(_FOREIGN_PACKAGE + ".")


def _pointer(origin: type, name: str) -> str:
    public = "anyio.abc" if origin.__module__.startswith("anyio.abc") else "anyio"
    public_origin = f"{public}.{origin.__name__}"
    return f"As AnyIO's ``{public_origin}.{name}`` (see AnyIO's documentation)."


def _documented_copy(
    function: types.FunctionType, cls: type, package: str, doc: str
) -> types.FunctionType:
    copy = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__annotations__ = dict(function.__annotations__)
    copy.__dict__.update(function.__dict__)
    copy.__qualname__ = f"{cls.__qualname__}.{function.__name__}"
    copy.__module__ = package
    copy.__doc__ = doc
    return copy
