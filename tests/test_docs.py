"""The documentation's promises to a newcomer, checked on its source.

* Every code excerpt (a ``literalinclude`` of part of a file) says it is one
  and links to the whole file, which :doc:`tutorial/programs` shows; and no
  excerpt uses a name the reader has not been shown on that page (a guess,
  like step 2's ``LIMIT`` once was), apart from modules the file imports.
* Install commands work today: portastreams is not published, so they
  install from a clone (``.``) or a built wheel, never by name from an
  index, and name only extras that exist.
* The code blocks have a copy button; the benchmarks are not a CLI command.
"""

from __future__ import annotations

import ast
import builtins
import importlib.metadata
import re
import shlex
import symtable
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CODE = DOCS / "tutorial" / "code"
PROGRAMS = DOCS / "tutorial" / "programs.rst"
PAGES = sorted(DOCS.rglob("*.rst"))

#: literalinclude options that show part of a file.
SELECTING = {"pyobject", "start-at", "start-after", "end-at", "end-before", "lines"}

_DIRECTIVE = re.compile(
    r"^[ \t]*\.\. literalinclude:: (?P<path>\S+)\n(?P<options>(?:[ \t]+:[\w-]+:.*\n)*)",
    re.MULTILINE,
)


class Include(NamedTuple):
    page: Path
    file: Path
    options: dict[str, str]

    @property
    def is_excerpt(self) -> bool:
        return bool(SELECTING & set(self.options))

    def code(self) -> str:
        """The code the reader sees, selected as Sphinx selects it."""
        text = self.file.read_text(encoding="utf-8")
        if "pyobject" in self.options:
            for node in ast.parse(text).body:
                if getattr(node, "name", None) == self.options["pyobject"]:
                    assert isinstance(
                        node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                    )
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    lines = text.splitlines(keepends=True)
                    return "".join(lines[first - 1 : node.end_lineno])
            raise AssertionError(f"{self.page.name}: no {self.options['pyobject']}")
        assert "lines" not in self.options, "select by content, not by line numbers"
        lines = text.splitlines(keepends=True)
        start, end = 0, len(lines)
        for option, offset in (("start-at", 0), ("start-after", 1)):
            if option in self.options:
                start = _index(lines, self.options[option], 0) + offset
        for option, offset in (("end-before", 0), ("end-at", 1)):
            if option in self.options:
                end = _index(lines, self.options[option], start) + offset
        return "".join(lines[start:end])


def _index(lines: list[str], marker: str, start: int) -> int:
    for index in range(start, len(lines)):
        if marker in lines[index]:
            return index
    raise AssertionError(f"{marker!r} not found")


def includes(page: Path) -> list[Include]:
    text = page.read_text(encoding="utf-8")
    return [
        Include(
            page,
            (page.parent / match["path"]).resolve(),
            {
                name: value.strip()
                for name, value in re.findall(r":([\w-]+):(.*)", match["options"])
            },
        )
        for match in _DIRECTIVE.finditer(text)
    ]


ALL_INCLUDES = [include for page in PAGES for include in includes(page)]
EXCERPTS = [include for include in ALL_INCLUDES if include.is_excerpt]


def _id(include: Include) -> str:
    return f"{include.page.relative_to(DOCS)}:{include.file.name}"


def test_there_are_excerpts_to_check() -> None:
    assert len(EXCERPTS) > 20
    assert all(include.file.is_file() for include in ALL_INCLUDES)


@pytest.mark.parametrize("excerpt", EXCERPTS, ids=_id)
def test_an_excerpt_says_so_and_links_to_the_whole_file(excerpt: Include) -> None:
    caption = excerpt.options.get("caption", "")
    assert "excerpt of" in caption.lower(), caption
    assert f":ref:`whole file <program-{excerpt.file.stem}>`" in caption, caption


def test_the_programs_page_has_every_file_whole() -> None:
    text = PROGRAMS.read_text(encoding="utf-8")
    shown = {include.file.name for include in includes(PROGRAMS)}
    assert shown == {path.name for path in CODE.glob("*.py")}
    assert not [include for include in includes(PROGRAMS) if include.is_excerpt]
    for path in CODE.glob("*.py"):
        label = f".. _program-{path.stem}:\n"
        assert label in text, label
        section = text.split(label, 1)[1].split(".. _program-", 1)[0]
        assert f".. literalinclude:: code/{path.name}\n" in section
        assert f":download:`Download {path.name} <code/{path.name}>`" in section


def _names(code: str) -> tuple[set[str], set[str]]:
    """``(used, bound)``: global names the code reads, and the names it binds."""
    table = symtable.symtable(textwrap.dedent(code), "excerpt", "exec")
    bound = {
        symbol.get_name()
        for symbol in table.get_symbols()
        if symbol.is_assigned() or symbol.is_imported()
    }
    used: set[str] = set()

    def visit(scope: symtable.SymbolTable) -> None:
        for symbol in scope.get_symbols():
            if symbol.is_referenced() and (scope is table or symbol.is_global()):
                used.add(symbol.get_name())
        for child in scope.get_children():
            visit(child)

    visit(table)
    return used, bound


def _imported_modules(path: Path) -> set[str]:
    """Names bound by ``import x`` in the file (the reader knows ``anyio``...)."""
    return {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import)
        for alias in node.names
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_excerpts_use_only_names_shown_on_their_page(page: Path) -> None:
    shown = set(dir(builtins))
    for include in includes(page):
        if "diff" in include.options:
            continue
        used, bound = _names(include.code())
        missing = used - shown - bound - _imported_modules(include.file)
        assert not missing, (
            f"{include.file.name} ({include.options}) uses {sorted(missing)}, "
            "defined nowhere on the page before it"
        )
        shown |= bound


def test_step2_shows_the_limit_its_main_uses() -> None:
    page = DOCS / "tutorial" / "lines.rst"
    code = "".join(include.code() for include in includes(page))
    assert "LIMIT = 64" in code
    assert code.index("LIMIT = 64") < code.index("limit=LIMIT")


# -- install commands -------------------------------------------------------------


def _command_blocks(path: Path) -> list[str]:
    """The literal blocks of an .rst page, or the fenced blocks of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return re.findall(r"^```\w*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    blocks = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.rstrip().endswith("::") or line.lstrip().startswith(".. "):
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        blocks.append("\n".join(block))
    return blocks


def _pip_installs() -> list[tuple[str, list[str]]]:
    found = []
    for path in [ROOT / "README.md", *PAGES]:
        for block in _command_blocks(path):
            for line in block.replace("\\\n", " ").splitlines():
                match = re.search(r"\bpip install (.*?)(?:&&|#|$)", line)
                if match:
                    arguments = shlex.split(match.group(1))
                    found.append(
                        (f"{path.relative_to(ROOT)}: {line.strip()}", arguments)
                    )
    return found


PIP_INSTALLS = _pip_installs()


def test_install_commands_are_found() -> None:
    places = {place.split(":")[0] for place, _ in PIP_INSTALLS}
    assert {
        "README.md",
        "docs/index.rst",
        "docs/tutorial/index.rst",
        "docs/development.rst",
    } <= places


@pytest.mark.parametrize(
    ("place", "arguments"), PIP_INSTALLS, ids=[p for p, _ in PIP_INSTALLS]
)
def test_install_commands_work_before_publication(
    place: str, arguments: list[str]
) -> None:
    extras = set(
        importlib.metadata.metadata("portastreams").get_all("Provides-Extra") or []
    )
    for argument in arguments:
        if argument.startswith("-"):
            continue
        requirement = re.match(r"[A-Za-z0-9_.-]+", argument)
        # Not on PyPI yet: from a clone (".") or a wheel file, never by name.
        assert not (requirement and requirement.group(0).lower() == "portastreams"), (
            place
        )
        match = re.fullmatch(
            r"(?P<source>\.|.*\.whl\)?\"?)\[(?P<extras>[\w,]+)\]", argument
        )
        if match:
            assert set(match["extras"].split(",")) <= extras, place


# -- copy button, benchmarks -----------------------------------------------------


def test_code_blocks_have_a_copy_button() -> None:
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert re.search(r'^    "sphinx_copybutton",$', conf, re.MULTILINE)
    requires = (
        importlib.metadata.metadata("portastreams").get_all("Requires-Dist") or []
    )
    assert any(
        re.match(r"sphinx-copybutton\b.*extra == [\"']docs[\"']", requirement)
        for requirement in requires
    ), requires


def test_nothing_speaks_of_a_bench_command() -> None:
    places = [ROOT / "README.md", *PAGES, *(ROOT / "portastreams").glob("*.py")]
    places += (ROOT / "benchmarks").glob("*.py")
    for path in places:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"portastreams bench\b", text), path
