"""Development sessions: tests on every supported Python, lint, types, docs, packaging, benchmarks.

Each session needs its Python interpreter (``python3.10`` ... ``python3.13``).
Interpreters installed with pyenv are found by themselves: every pyenv
version matching a Python below is put on ``PATH`` for nox, whatever
``pyenv global`` says. A session whose interpreter is missing *fails*, with
nox's "Python interpreter 3.X not found"; it is never silently skipped (pass
``--no-error-on-missing-interpreters`` to skip such sessions instead).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
# A session that cannot find its Python fails instead of being skipped.
nox.options.error_on_missing_interpreters = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: The Python of the single-interpreter sessions (lint, docs, ...).
TOOLS_PYTHON = "3.12"

# The one test command; README.md and .ci/run use the same.
TEST_COMMAND = ["python", "-m", "pytest"]

_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def pyenv_bin_dirs(root: Path, pythons: Iterable[str]) -> list[Path]:
    """The ``bin`` directory of the newest pyenv CPython release for each of ``pythons``.

    ``root`` is pyenv's root (``pyenv root``); its ``versions/3.12.1/bin``
    and the like are looked at. Only plain releases (``3.12.1``, not
    ``3.12-dev``, ``3.13.0t`` or a virtualenv) that have a ``python3.12``
    executable count. The result follows the order of ``pythons``; versions
    pyenv does not have are left out.
    """
    wanted = list(dict.fromkeys(pythons))
    newest: dict[str, tuple[tuple[int, ...], Path]] = {}
    versions = root / "versions"
    candidates = sorted(versions.iterdir()) if versions.is_dir() else []
    for candidate in candidates:
        match = _RELEASE.fullmatch(candidate.name)
        if match is None:
            continue
        minor = f"{match[1]}.{match[2]}"
        release = tuple(int(part) for part in match.groups())
        bin_dir = candidate / "bin"
        if minor not in wanted or not (bin_dir / f"python{minor}").is_file():
            continue
        if minor not in newest or release > newest[minor][0]:
            newest[minor] = (release, bin_dir)
    return [newest[minor][1] for minor in wanted if minor in newest]


def pyenv_root() -> Path | None:
    """``pyenv root``, or None when pyenv is not installed."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    result = subprocess.run(
        [pyenv, "root"], capture_output=True, text=True, check=False
    )
    root = result.stdout.strip()
    return Path(root) if result.returncode == 0 and root else None


def put_pyenv_pythons_on_path() -> None:
    """Prepend pyenv's interpreters for the sessions' Pythons to ``PATH``.

    pyenv's shims only run the versions selected by ``pyenv global`` /
    ``PYENV_VERSION``; nox looks for ``python3.X`` on ``PATH``, so without
    this it would not find the others.
    """
    root = pyenv_root()
    if root is None:
        return
    bin_dirs = [str(path) for path in pyenv_bin_dirs(root, [*PYTHONS, TOOLS_PYTHON])]
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([*bin_dirs, path] if path else bin_dirs)


put_pyenv_pythons_on_path()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on asyncio, asyncio + uvloop and trio (the wheel test is in `package`)."""
    session.install("-e", ".[test,interop]")
    session.run(*TEST_COMMAND, "-m", "not wheel", *session.posargs)


@nox.session(python=TOOLS_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=TOOLS_PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, tests and examples; pyright's public-API check.

    trio-typing is deliberately not installed: its mypy plugin only works
    with mypy < 1.11, and its trio-stubs would shadow the inline types trio
    has shipped since 0.23 (see docs/development.rst).
    """
    session.install("-e", ".[test,interop,bench]", "mypy", "pyright")
    session.run("mypy")
    session.run("pyright", "--verifytypes", "portastreams", "--ignoreexternal")


@nox.session(python=TOOLS_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python=TOOLS_PYTHON)
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel, twine-check them, then test the wheel installed.

    The publishing steps of docs/development.rst: ``python -m build``,
    ``twine check``, and ``tests/test_wheel.py``, which installs the wheel
    in a clean virtual environment outside the checkout and runs every
    command the package advertises.
    """
    session.install("-e", ".[test]", "build", "twine")
    # Not session.create_tmp(): it would point TMPDIR into the checkout, and
    # the test's environments must be outside it.
    dist = Path(tempfile.mkdtemp(prefix="portastreams-dist-"))
    try:
        session.run("python", "-m", "build", "--outdir", str(dist))
        built = sorted(str(path) for path in dist.iterdir())
        session.run("twine", "check", "--strict", *built)
        (wheel,) = (path for path in built if path.endswith(".whl"))
        session.run(
            *TEST_COMMAND,
            "-m",
            "wheel",
            "tests/test_wheel.py",
            *session.posargs,
            env={"PORTASTREAMS_WHEEL": wheel},
        )
    finally:
        shutil.rmtree(dist, ignore_errors=True)


@nox.session(python=TOOLS_PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks (benchmarks/ of the checkout); arguments after -- go to them.

    Clients and servers against each backend's native code, full size;
    ``nox -s bench -- --scale 0.1`` for a quicker run. The server workloads
    need redis-benchmark and wrk from the system package manager
    (``apt-get install redis-tools wrk``); without one, its workloads are
    skipped with that hint.
    """
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=TOOLS_PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the core modules, each against its fast tests.

    ``nox -s mutation -- _buffer _exceptions`` mutates some modules only;
    ``--jobs N``, ``--deadline SECONDS`` and ``--fail-under PERCENT`` tune the
    run (tools/mutation.py). The whole session takes tens of minutes; CI runs
    the short profile, ``_buffer --fail-under 90``.
    """
    session.install("-e", ".[test]", "mutmut>=3.8,<4")
    session.run("python", "tools/mutation.py", *session.posargs)


@nox.session(python=TOOLS_PYTHON)
def stress(session: nox.Session) -> None:
    """The stress suite with asyncio's own server as the control, and its report.

    ``nox -s stress`` runs the short profile (the test suite runs it too,
    without the control); ``nox -s stress -- --profile long`` the long one
    (10,000 connections, a 60-second soak). ``-- --help`` lists the options.
    The report goes to stress-results/.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "stress", *session.posargs)
    # TLS write(); close() delivers everything, over 1,000 seeded runs per
    # backend and direction (CI runs 40).
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/test_tls_close.py",
        "-o",
        "async_test_deadline=1800",
        "-o",
        "timeout=1800",
        env={"PORTASTREAMS_TLS_CLOSE_RUNS": "1000"},
    )


@nox.session(python=TOOLS_PYTHON)
def fuzz(session: nox.Session) -> None:
    """Beyond CI: the differential reader properties at 100,000 examples each,
    then random bytes and disconnects into the example servers.

    ``FUZZ_EXAMPLES=N`` changes the examples per property; arguments after
    ``--`` go to the server fuzz target (``--seconds S`` per target and
    backend, default 20; ``--cases N``; ``--seed N``).
    """
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/test_reader_differential.py",
        "--hypothesis-show-statistics",
        # 100,000 examples take minutes per property: no per-test timeout
        # (its signal would land in the middle of an example's teardown).
        "-o",
        "timeout=0",
        env={"HYPOTHESIS_PROFILE": "fuzz"},
    )
    session.run("python", "-m", "stress.fuzz", *session.posargs)


@nox.session(python=TOOLS_PYTHON)
def bench_instructions(session: nox.Session) -> None:
    """Instructions per item of every contender (callgrind): the benchmarks
    without the noise; arguments after -- go to ``benchmarks.instructions``.

    Needs valgrind (``apt-get install valgrind``), and redis-benchmark and
    wrk for the servers; about an hour at full size, ``-- --scale 0.2`` for a
    quicker run.
    """
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks.instructions", *session.posargs)
