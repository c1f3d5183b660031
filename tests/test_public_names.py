"""The public names say ``portastreams.X``, and ``help(portastreams)`` reads well.

Tracebacks, reprs, pickles and ``help()`` name the public classes by their
public path, not the private module that defines them; ``help()`` opens
with an overview of every public name and does not reprint AnyIO's
docstrings (with their Sphinx markup) for the members the streams inherit.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import pydoc
import re
import socket
import traceback
import types
from typing import Any

import anyio
import pytest
from anyio import TypedAttributeLookupError, TypedAttributeProvider
from anyio.abc import SocketAttribute

import portastreams

CLASSES = [
    name
    for name in portastreams.__all__
    if inspect.isclass(getattr(portastreams, name))
]
FUNCTIONS = [name for name in portastreams.__all__ if name not in CLASSES]
#: What help() renders with (no bold by backspacing).
PLAIN_TEXT: Any = pydoc.plaintext  # type: ignore[attr-defined]


def test_every_public_name_is_sorted_into_classes_or_functions() -> None:
    assert CLASSES == [
        "HandshakeTimeoutError",
        "IncompleteReadError",
        "LimitOverrunError",
        "Server",
        "StreamReader",
        "StreamReaderProtocol",
        "StreamWriter",
    ]
    assert all(inspect.isfunction(getattr(portastreams, name)) for name in FUNCTIONS)


@pytest.mark.parametrize("name", CLASSES)
def test_classes_are_portastreams_x(name: str) -> None:
    cls = getattr(portastreams, name)
    assert cls.__module__ == "portastreams"
    assert cls.__qualname__ == name
    assert repr(cls) == f"<class 'portastreams.{name}'>"
    for member_name, member in vars(cls).items():
        if isinstance(member, property):
            function = member.fget
        elif isinstance(member, (classmethod, staticmethod)):
            function = member.__func__
        else:
            function = member
        if isinstance(function, types.FunctionType):
            assert function.__module__ == "portastreams", member_name


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_are_portastreams_x(name: str) -> None:
    assert getattr(portastreams, name).__module__ == "portastreams"


async def _read_errors() -> tuple[BaseException, BaseException]:
    reader = portastreams.StreamReader(limit=4)
    reader.feed_data(b"123456\n")
    with pytest.raises(portastreams.LimitOverrunError) as overrun:
        await reader.readuntil(b"\n")
    reader.feed_eof()
    with pytest.raises(portastreams.IncompleteReadError) as incomplete:
        await reader.readexactly(10)
    return incomplete.value, overrun.value


def test_tracebacks_name_the_public_exceptions() -> None:
    incomplete, overrun = anyio.run(_read_errors)
    # The messages are asyncio's; only the names differ.
    expected_incomplete = asyncio.IncompleteReadError(b"123456\n", 10)
    assert traceback.format_exception_only(incomplete) == [
        f"portastreams.IncompleteReadError: {expected_incomplete}\n"
    ]
    (line,) = traceback.format_exception_only(overrun)
    assert line.startswith("portastreams.LimitOverrunError: Separator is ")
    assert "_exceptions" not in "".join(traceback.format_exception(overrun))


def test_exceptions_pickle_by_their_public_name() -> None:
    incomplete, overrun = anyio.run(_read_errors)
    assert b"portastreams._" not in pickle.dumps(incomplete)
    copy = pickle.loads(pickle.dumps(incomplete))
    assert type(copy) is portastreams.IncompleteReadError
    assert (copy.partial, copy.expected) == (b"123456\n", 10)
    copy = pickle.loads(pickle.dumps(overrun))
    assert type(copy) is portastreams.LimitOverrunError
    assert isinstance(overrun, portastreams.LimitOverrunError)
    assert (str(copy), copy.consumed) == (str(overrun), overrun.consumed)


@pytest.mark.anyio
async def test_extra_behaves_as_anyios_own() -> None:
    """``extra`` got a docstring of its own: it must still be AnyIO's ``extra``."""
    ours, theirs = socket.socketpair()
    with theirs, anyio.fail_after(10):
        reader, writer = await portastreams.open_connection(sock=ours)
        for stream in (reader, writer):
            for attribute in (SocketAttribute.family, SocketAttribute.remote_address):
                try:
                    expected: object = TypedAttributeProvider.extra(stream, attribute)
                except TypedAttributeLookupError:
                    with pytest.raises(TypedAttributeLookupError):
                        stream.extra(attribute)
                else:
                    assert stream.extra(attribute) == expected
            missing = object()
            assert stream.extra(SocketAttribute.local_port, missing) is (
                TypedAttributeProvider.extra(
                    stream, SocketAttribute.local_port, missing
                )
            )
        writer.close()
        await writer.wait_closed()


# -- help() ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def help_text() -> str:
    return pydoc.render_doc(portastreams, renderer=PLAIN_TEXT)


def _section(text: str, title: str) -> str:
    match = re.search(rf"^{title}\n((?:    .*\n|\n)*)", text, re.MULTILINE)
    assert match, f"no {title} section"
    return match.group(1)


def test_help_opens_with_an_overview_of_every_name(help_text: str) -> None:
    description = _section(help_text, "DESCRIPTION")
    assert help_text.index("DESCRIPTION") < help_text.index("CLASSES")
    assert len(description.splitlines()) <= 40
    for name in portastreams.__all__:
        assert re.search(rf"^        {name} +\S", description, re.MULTILINE), name


def test_help_names_no_private_module(help_text: str) -> None:
    assert "portastreams._" not in help_text
    assert "portastreams._" not in pydoc.render_doc(
        portastreams.StreamReader.readline, renderer=PLAIN_TEXT
    )


def _anyio_docstrings() -> set[str]:
    """The first line of each docstring of an AnyIO member the public classes have."""
    lines = set()
    for name in CLASSES:
        cls = getattr(portastreams, name)
        for base in cls.__mro__[1:]:
            if not base.__module__.startswith("anyio"):
                continue
            for member in vars(base).values():
                target = member.fget if isinstance(member, property) else member
                doc = inspect.getdoc(target) if callable(target) else None
                if doc and not doc.startswith(("Return self", "Initialize self")):
                    lines.add(doc.splitlines()[0].strip())
    return lines


def test_help_does_not_reprint_anyios_docstrings(help_text: str) -> None:
    anyio_lines = _anyio_docstrings()
    assert anyio_lines  # there is something to keep out
    for line in anyio_lines:
        assert line not in help_text
    # AnyIO's docstrings are Sphinx markup; none of it shows.
    for markup in (":param ", ":raises ", ":return", ":class:`~"):
        assert markup not in help_text, markup


def test_inherited_anyio_sections_list_signatures_only(help_text: str) -> None:
    # From "Methods inherited from anyio...:" to the next separator or the
    # end of the class.
    sections = re.findall(
        r"^     \|  Methods inherited from anyio[\w.]*:\n((?:     \|.*\n)*?)"
        r"(?=     \|  -{10}|(?!     \|))",
        help_text,
        re.MULTILINE,
    )
    assert sections, "the streams inherit from AnyIO's ABCs"
    for section in sections:
        signatures = [line for line in section.splitlines() if line.strip(" |")]
        assert signatures
        in_signature = False  # Python 3.13 splits a long signature over lines
        for line in signatures:
            if in_signature:
                # "     |      parameter," continuation lines, then "  ) -> ...".
                assert re.match(r"     \|  (    \S|\) -> )", line), line
                in_signature = not line.startswith("     |  ) -> ")
                continue
            # "     |  name(...)" lines; a docstring would be indented more.
            assert re.match(r"     \|  (async )?\w+\(", line), line
            in_signature = line.endswith("(")
