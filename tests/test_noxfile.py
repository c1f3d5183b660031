"""The noxfile: pyenv's interpreters are found, a missing interpreter fails loudly.

The README's ``nox`` lines must work on a fresh machine with pyenv, where
only ``pyenv global``'s version is on ``PATH``, and a session whose Python
cannot be found must fail rather than be skipped with exit status 0.
"""

from __future__ import annotations

import os
import runpy
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nox
import pytest

REPO = Path(__file__).resolve().parent.parent
NOXFILE = REPO / "noxfile.py"


def _fake_python(bin_dir: Path, name: str) -> None:
    bin_dir.mkdir(parents=True)
    (bin_dir / name).write_text("#!/bin/sh\n")
    (bin_dir / name).chmod(0o755)


@pytest.fixture
def pyenv_root(tmp_path: Path) -> Path:
    """A pyenv root with releases, a dev build, a free-threaded build, a virtualenv."""
    root = tmp_path / "pyenv-root"
    for version, executable in [
        ("3.9.18", "python3.9"),
        ("3.10.13", "python3.10"),
        ("3.12.9", "python3.12"),
        ("3.12.10", "python3.12"),  # newer than 3.12.9: compared as numbers
        ("3.12.1", "python3.12"),
        ("3.12-dev", "python3.12"),
        ("3.13.0t", "python3.13"),
        ("3.13.1", "python3.13"),
        ("3.11.7", "python3.9"),  # broken: no python3.11 in it
        ("project-env", "python3.11"),
    ]:
        _fake_python(root / "versions" / version / "bin", executable)
    return root


@pytest.fixture(scope="module")
def noxfile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The noxfile's namespace, loaded once, where there is no pyenv.

    Once: loading registers the sessions with nox, which warns about a
    second registration. ``PATH`` is restored afterwards.
    """
    empty = tmp_path_factory.mktemp("empty-path")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PATH", str(empty))
        return runpy.run_path(str(NOXFILE))


def test_missing_interpreters_are_errors(noxfile: dict[str, Any]) -> None:
    assert nox.options.error_on_missing_interpreters is True
    assert noxfile["PYTHONS"] == ["3.10", "3.11", "3.12", "3.13"]


def test_newest_release_per_python(noxfile: dict[str, Any], pyenv_root: Path) -> None:
    bin_dirs: Callable[[Path, list[str]], list[Path]] = noxfile["pyenv_bin_dirs"]
    versions = pyenv_root / "versions"
    assert bin_dirs(pyenv_root, ["3.10", "3.11", "3.12", "3.13"]) == [
        versions / "3.10.13" / "bin",
        versions / "3.12.10" / "bin",
        versions / "3.13.1" / "bin",
    ]
    assert bin_dirs(pyenv_root, ["3.13", "3.12", "3.13"]) == [
        versions / "3.13.1" / "bin",
        versions / "3.12.10" / "bin",
    ]
    assert bin_dirs(pyenv_root.parent / "no-such-root", ["3.12"]) == []


def _run(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_loading_the_noxfile_puts_pyenv_pythons_on_path(
    pyenv_root: Path, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    pyenv = tools / "pyenv"
    pyenv.write_text(f'#!/bin/sh\n[ "$1" = root ] && echo "{pyenv_root}"\n')
    pyenv.chmod(pyenv.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": str(tools)}
    code = (
        f"import os, runpy; runpy.run_path({str(NOXFILE)!r}); print(os.environ['PATH'])"
    )
    result = _run(["-c", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    versions = pyenv_root / "versions"
    assert result.stdout.strip().split(os.pathsep) == [
        str(versions / "3.10.13" / "bin"),
        str(versions / "3.12.10" / "bin"),
        str(versions / "3.13.1" / "bin"),
        str(tools),
    ]


def test_a_session_without_its_interpreter_fails(tmp_path: Path) -> None:
    (tmp_path / "noxfile.py").write_text(
        "import runpy\n"
        "import nox\n"
        f"runpy.run_path({str(NOXFILE)!r})\n"
        "\n"
        "@nox.session(python='3.99')\n"
        "def needs_python_3_99(session):\n"
        "    session.run('python', '--version')\n"
    )
    # Not in CI's environment, where nox would make the same choice by itself.
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    result = _run(["-m", "nox", "-s", "needs_python_3_99"], env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Session needs_python_3_99 failed: Python interpreter 3.99 not found" in (
        output
    )
    assert "skipped" not in output
