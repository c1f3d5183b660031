"""Development sessions: tests on every supported Python, lint, types, docs, benchmarks."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

# The one test command; README.md and .ci/run use the same.
TEST_COMMAND = ["python", "-m", "pytest"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on asyncio, asyncio + uvloop and trio."""
    session.install("-e", ".[test]")
    session.run(*TEST_COMMAND, *session.posargs)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.12")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, tests and examples; pyright's public-API check.

    trio-typing is deliberately not installed: its mypy plugin only works
    with mypy < 1.11, and its trio-stubs would shadow the inline types trio
    has shipped since 0.23 (see docs/development.rst).
    """
    session.install("-e", ".[test,bench]", "mypy", "pyright")
    session.run("mypy")
    session.run("pyright", "--verifytypes", "portastreams", "--ignoreexternal")


@nox.session(python="3.12")
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python="3.12")
def bench(session: nox.Session) -> None:
    """Benchmarks against asyncio's own streams and AnyIO's BufferedByteStream."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "portastreams", "bench", *session.posargs)


@nox.session(python="3.12")
def stress(session: nox.Session) -> None:
    """The stress suite with asyncio's own server as the control, and its report.

    ``nox -s stress`` runs the short profile (the test suite runs it too,
    without the control); ``nox -s stress -- --profile long`` the long one
    (10,000 connections, a 60-second soak). ``-- --help`` lists the options.
    The report goes to stress-results/.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "stress", *session.posargs)


@nox.session(python="3.12")
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
        env={"HYPOTHESIS_PROFILE": "fuzz"},
    )
    session.run("python", "-m", "stress.fuzz", *session.posargs)
