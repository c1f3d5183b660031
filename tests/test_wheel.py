"""The wheel, installed in a clean virtual environment outside the checkout.

What a user gets from ``pip install portastreams-....whl``: the package
imports from the environment (never from the source tree), the
``portastreams`` console script and ``python -m portastreams`` run every
advertised command (``--help``, ``--version``, ``demo``, ``echo-server``),
missing backends are named with their extra, ``bench`` says where the
benchmarks are, and a tutorial program runs with the wheel alone.

Marked ``wheel``: ``nox -s package`` runs it once, on the wheel it built with
``python -m build`` (passed in ``PORTASTREAMS_WHEEL``); the ``tests``
sessions leave it out. Run by hand (``python -m pytest
tests/test_wheel.py``), it builds the wheel with ``pip wheel``. Either way
it needs pip to reach the package index, for the dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from subprocesses import REPO, Background, describe

pytestmark = pytest.mark.wheel

#: Set by ``nox -s package`` to the wheel ``python -m build`` made.
WHEEL_ENV = "PORTASTREAMS_WHEEL"
INSTALL_TIMEOUT = 600.0
RUN_TIMEOUT = 60.0
BACKENDS = ("asyncio", "uvloop", "trio")
HINTS = {
    "trio": "pip install trio (portastreams' [trio] extra)",
    "uvloop": "pip install uvloop (portastreams' [uvloop] extra)",
}


def _clean_env() -> dict[str, str]:
    """Our environment without anything that points Python at the checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in (
            "PYTHONPATH",
            "PYTHONHOME",
            "VIRTUAL_ENV",
            "PYTHONWARNINGS",
            "PYTHONSTARTUP",
        )
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    command: Sequence[str], cwd: Path, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get(WHEEL_ENV)
    if given:
        path = Path(given)
        assert path.is_file(), f"{WHEEL_ENV}={given}: no such file"
        return path
    out = tmp_path_factory.mktemp("wheelhouse")
    result = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(REPO)],
        cwd=out,
        timeout=INSTALL_TIMEOUT,
    )
    assert result.returncode == 0, describe(result)
    (path,) = out.glob("portastreams-*.whl")
    return path


@dataclass
class Environment:
    """A virtual environment with the wheel installed, and a directory to work in."""

    root: Path
    workdir: Path

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    @property
    def script(self) -> str:
        return str(self.root / "bin" / "portastreams")

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return _run(command, self.workdir)


def _environment(
    tmp_path_factory: pytest.TempPathFactory, name: str, requirements: list[str]
) -> Environment:
    root = tmp_path_factory.mktemp(name)
    assert REPO not in root.parents, (
        f"{root} is in the checkout: the environment must be outside it "
        "(point TMPDIR elsewhere)"
    )
    result = _run([sys.executable, "-m", "venv", str(root / "venv")], root)
    assert result.returncode == 0, describe(result)
    venv = root / "venv"
    result = _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            *requirements,
        ],
        root,
        timeout=INSTALL_TIMEOUT,
    )
    assert result.returncode == 0, describe(result)
    workdir = root / "work"
    workdir.mkdir()
    # python -m puts the current directory first on sys.path: a "benchmarks"
    # package here must never be imported by the command line.
    decoy = workdir / "benchmarks"
    decoy.mkdir()
    for module in ("__init__.py", "__main__.py"):
        (decoy / module).write_text(
            "import sys\nprint('decoy imported')\nsys.exit(99)\n"
        )
    return Environment(venv, workdir)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Environment:
    """The wheel alone: asyncio is the only backend."""
    return _environment(tmp_path_factory, "bare", [str(wheel)])


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Environment:
    """The tutorial's install line, with the wheel: ``[trio,uvloop]`` and trustme."""
    return _environment(tmp_path_factory, "full", [f"{wheel}[trio,uvloop]", "trustme"])


def _summary(output: str) -> dict[str, str]:
    summary = output[output.index("\nSummary\n") :].splitlines()[2:]
    return {line.split()[0]: " ".join(line.split()[1:]) for line in summary}


# -- the wheel alone ---------------------------------------------------------------


def test_the_package_comes_from_the_environment(bare: Environment) -> None:
    result = bare.run(
        bare.python, "-c", "import portastreams; print(portastreams.__file__)"
    )
    assert result.returncode == 0, describe(result)
    location = Path(result.stdout.strip())
    assert bare.root in location.parents
    assert REPO not in location.parents
    # What the wheel holds: the package and its type information, no tests.
    result = bare.run(bare.python, "-m", "pip", "show", "--files", "portastreams")
    assert result.returncode == 0, describe(result)
    files = set(re.findall(r"^  (\S+)$", result.stdout, re.MULTILINE))
    assert "portastreams/py.typed" in files
    assert "portastreams/__main__.py" in files
    assert not [name for name in files if name.startswith(("tests/", "benchmarks/"))]


@pytest.mark.parametrize("how", ["script", "module"])
def test_help_and_version(bare: Environment, how: str) -> None:
    command = [bare.script] if how == "script" else [bare.python, "-m", "portastreams"]
    prog = "portastreams" if how == "script" else "python -m portastreams"
    result = bare.run(*command, "--help")
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith(f"usage: {prog} [-h] [--version] COMMAND ...\n")
    assert re.findall(r"^    (\S+)", result.stdout, re.MULTILINE) == [
        "demo",
        "echo-server",
        "cat",
    ]
    assert "nox -s bench" in result.stdout
    for subcommand in ("demo", "echo-server", "cat"):
        result = bare.run(*command, subcommand, "--help")
        assert result.returncode == 0, describe(result)
        assert result.stdout.startswith(f"usage: {prog} {subcommand} [-h]")
    result = bare.run(*command, "--version")
    assert result.returncode == 0, describe(result)
    assert result.stdout == "0.1.0\n"


def test_demo_runs_on_asyncio_and_names_the_missing_extras(bare: Environment) -> None:
    result = bare.run(bare.script, "demo")
    assert result.returncode == 0, describe(result)
    assert result.stderr == ""
    assert _summary(result.stdout) == {
        "asyncio": "OK 3/3 exchanges",
        "uvloop": f"SKIP not installed: {HINTS['uvloop']}",
        "trio": f"SKIP not installed: {HINTS['trio']}",
    }
    # Asked for by name, a missing backend is a failure.
    result = bare.run(bare.python, "-m", "portastreams", "demo", "--backend", "trio")
    assert result.returncode == 1, describe(result)
    assert _summary(result.stdout) == {"trio": f"FAIL not installed: {HINTS['trio']}"}


@pytest.mark.parametrize("backend", ["trio", "uvloop"])
def test_echo_server_names_the_missing_extra(bare: Environment, backend: str) -> None:
    result = bare.run(bare.script, "echo-server", "--backend", backend, "--port", "0")
    assert result.returncode == 2, describe(result)
    assert result.stderr == (
        f"backend {backend!r} is not installed; install it with: {HINTS[backend]}\n"
    )


def test_bench_points_to_the_checkout(bare: Environment) -> None:
    for command in ([bare.script], [bare.python, "-m", "portastreams"]):
        result = bare.run(*command, "bench", "--scale", "0.01")
        assert result.returncode == 2, describe(result)
        assert "decoy" not in result.stdout + result.stderr
        assert "'bench' is not a command" in result.stderr
        assert "'nox -s bench' or 'python -m benchmarks'" in result.stderr


# -- with the backends --------------------------------------------------------------


def test_demo_runs_on_every_backend(full: Environment) -> None:
    result = full.run(full.python, "-m", "portastreams", "demo")
    assert result.returncode == 0, describe(result)
    assert result.stderr == ""
    assert _summary(result.stdout) == dict.fromkeys(BACKENDS, "OK 3/3 exchanges")
    assert "decoy" not in result.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_server(full: Environment, backend: str) -> None:
    with Background(
        ["echo-server", "--backend", backend, "--port", "0"],
        command=[full.script],
        cwd=full.workdir,
    ) as server:
        line = server.wait_for_line(lambda line: line.startswith("Serving on "))
        match = re.fullmatch(
            rf"Serving on 127\.0\.0\.1:(\d+) with {backend}; Ctrl\+C to stop\n", line
        )
        assert match, line
        with socket.create_connection(("127.0.0.1", int(match[1])), timeout=10) as sock:
            sock.sendall(b"hello, wheel\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received == b"hello, wheel\n"
        server.wait_for_line(lambda line: line.endswith(": closed\n"))
        assert server.interrupt() == 0, server.output()
    assert server.stdout_lines[-1] == "stopped\n"
    assert server.stderr_lines == []


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("step1_echo.py", "Received: b'Hello, World!\\n'\n"),
        (
            "step2_lines.py",
            "b'HELLO\\n'\nb'ERR line too long\\n'\nb'STILL THERE?\\n'\n",
        ),
        ("step7_tls.py", "(('DNS', 'localhost'),)"),
    ],
)
def test_a_tutorial_program_runs_with_the_wheel(
    full: Environment, program: str, expected: str
) -> None:
    for name in ("step1_echo.py", "step7_tls.py", program):
        shutil.copy(REPO / "docs" / "tutorial" / "code" / name, full.workdir / name)
    result = full.run(full.python, "-W", "error", program)
    assert result.returncode == 0, describe(result)
    assert result.stderr == ""
    assert expected in result.stdout
