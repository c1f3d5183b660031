"""The command line (``portastreams`` / ``python -m portastreams``): ``demo``, ``echo-server``."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from subprocesses import BACKEND_NAMES, Background, child_env, describe, run_python

from portastreams import _cli, _demo

# -- demo -----------------------------------------------------------------------


def _check_backend_section(output: str, backend: str) -> None:
    assert re.search(rf"^=== {backend}: ", output, re.MULTILINE), output
    assert re.search(rf"^  {backend} +OK +3/3 exchanges$", output, re.MULTILINE), output


def test_demo_runs_on_every_backend() -> None:
    result = run_python(["-m", "portastreams", "demo"])
    assert result.returncode == 0, describe(result)
    assert result.stderr == ""
    output = result.stdout
    for backend in BACKEND_NAMES:
        _check_backend_section(output, backend)
    assert "FAIL" not in output
    assert "seed" not in output  # headings speak to a reader, not of project history
    summary = output[output.index("\nSummary\n") :].splitlines()[2:]
    assert [line.split()[0] for line in summary] == list(BACKEND_NAMES)
    # What crossed the wire, once per backend.
    for expected in [
        "client -> server  b'Hello World!'",
        "server -> client  b'Hello World!'",
        "server -> client  b'OK HELLO\\n'",
        "readline() raised ValueError: Separator is found, but chunk is longer "
        "than limit (from LimitOverrunError, consumed=64)",
        "server -> client  b'ERROR line longer than 32 bytes\\n'",
        "server -> client  b'OK STILL HERE\\n'",
        "client -> server  frame[5] b'hello'",
        "server -> client  frame[5] b'olleh'",
        "client -> server  frame[122880] b'00000 00001 ",
        "readexactly() raised IncompleteReadError: 3 bytes read on a total of "
        "10 expected bytes (partial=b'abc')",
    ]:
        assert output.count(expected) == len(BACKEND_NAMES), expected


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_demo_on_one_backend(backend: str) -> None:
    result = run_python(["-m", "portastreams", "demo", "--backend", backend])
    assert result.returncode == 0, describe(result)
    _check_backend_section(result.stdout, backend)
    for other in set(BACKEND_NAMES) - {backend}:
        assert f"=== {other}" not in result.stdout
        assert f"  {other} " not in result.stdout


async def _broken(transcript: _demo.Transcript) -> None:
    transcript.note("client", "about to fail")
    raise _demo.DemoFailure("this exchange is broken")


async def _stuck(transcript: _demo.Transcript) -> None:
    await anyio.sleep_forever()


def test_demo_failure_sets_the_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        _demo,
        "SCENARIOS",
        [
            ("echo", "the real echo", _demo.echo),
            ("broken", "raises", _broken),
            ("stuck", "never ends", _stuck),
        ],
    )
    monkeypatch.setattr(_demo, "TIMEOUT", 0.2)
    assert _cli.main(["demo", "--backend", "asyncio", "--backend", "trio"]) == 1
    output = capsys.readouterr().out
    assert "about to fail" in output
    assert "FAILED: DemoFailure('this exchange is broken')" in output
    assert "FAILED: TimeoutError()" in output
    for backend in ("asyncio", "trio"):
        assert re.search(
            rf"^  {backend} +FAIL +broken: DemoFailure\('this exchange is broken'\); "
            r"stuck: TimeoutError\(\)$",
            output,
            re.MULTILINE,
        ), output
    assert "uvloop" not in output


# -- echo-server --------------------------------------------------------------


def _exchange(port: int, payloads: Sequence[bytes]) -> bytes:
    """Send the payloads, half-close, and return everything echoed back.

    A thread sends while this one reads, so that a large echo cannot fill the
    socket buffers both ways and deadlock.
    """

    def send() -> None:
        for payload in payloads:
            sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
        sender.join(timeout=10)
        assert not sender.is_alive()
    return bytes(received)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_echo_server(backend: str) -> None:
    with Background(
        ["-m", "portastreams", "echo-server", "--backend", backend, "--port", "0"]
    ) as server:
        serving = server.wait_for_line(lambda line: line.startswith("Serving on "))
        match = re.fullmatch(
            rf"Serving on 127\.0\.0\.1:(\d+) with {backend}; Ctrl\+C to stop\n",
            serving,
        )
        assert match, serving
        port = int(match.group(1))

        assert _exchange(port, [b"ping\n"]) == b"ping\n"
        big = bytes(range(256)) * 1024  # 256 KiB, echoed while still being sent
        assert _exchange(port, [b"x", big]) == b"x" + big
        server.wait_for_line(lambda line: line.endswith(": closed\n"))
        server.wait_for_line(lambda line: line.endswith(": closed\n"))

        assert server.interrupt() == 0, server.output()

    output = "".join(server.stdout_lines)
    assert re.search(r"^127\.0\.0\.1:\d+: connected$", output, re.MULTILINE)
    assert re.search(r"^127\.0\.0\.1:\d+: echo b'ping\\n'$", output, re.MULTILINE)
    assert output.count(": connected\n") == 2
    assert output.count(": closed\n") == 2
    assert output.endswith("stopped\n")
    assert server.stderr_lines == []


def test_echo_server_rejects_an_unknown_backend() -> None:
    result = run_python(["-m", "portastreams", "echo-server", "--backend", "curio"])
    assert result.returncode == 2
    assert "invalid choice: 'curio'" in result.stderr


# -- missing backends ------------------------------------------------------------


@pytest.fixture
def without_trio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make trio look uninstalled (``find_spec`` returns None for a None entry)."""
    monkeypatch.setitem(sys.modules, "trio", None)


@pytest.mark.usefixtures("without_trio")
def test_echo_server_names_the_extra_of_a_missing_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _cli.main(["echo-server", "--backend", "trio", "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "backend 'trio' is not installed; install it with: "
        "pip install trio (portastreams' [trio] extra)\n"
    )
    assert captured.out == ""


@pytest.mark.usefixtures("without_trio")
def test_demo_names_the_extra_of_a_missing_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Asked for explicitly: a failure.
    assert _cli.main(["demo", "--backend", "trio"]) == 1
    output = capsys.readouterr().out
    assert re.search(
        r"^  trio +FAIL +not installed: pip install trio \(portastreams' \[trio\] "
        r"extra\)$",
        output,
        re.MULTILINE,
    ), output
    # Not asked for: skipped, with the same hint, and the others still run.
    assert _cli.main(["demo"]) == 0
    output = capsys.readouterr().out
    assert re.search(
        r"^  trio +SKIP +not installed: pip install trio \(portastreams' \[trio\] "
        r"extra\)$",
        output,
        re.MULTILINE,
    ), output
    assert re.search(r"^  asyncio +OK +3/3 exchanges$", output, re.MULTILINE), output


# -- bench, help and the program name -------------------------------------------


def _run_in(directory: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=directory,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bench_is_not_a_command_and_nothing_comes_from_the_current_directory(
    tmp_path: Path,
) -> None:
    # A "benchmarks" package in the current directory, which python -m puts
    # on sys.path: the command line must not run (nor import) it.
    decoy = tmp_path / "benchmarks"
    decoy.mkdir()
    for module in ("__init__.py", "__main__.py"):
        (decoy / module).write_text(
            "import sys\nprint('decoy imported')\nsys.exit(99)\n"
        )
    result = _run_in(tmp_path, ["-m", "portastreams", "bench", "--quick"])
    assert result.returncode == 2, describe(result)
    assert result.stdout == ""
    assert result.stderr == (
        "python -m portastreams: 'bench' is not a command. The benchmarks are "
        "not part of the installed package: in a source checkout, run them with "
        "'nox -s bench' or 'python -m benchmarks' (after pip install -e "
        "'.[bench]').\n"
    )
    for args in (["--help"], ["demo", "--backend", "asyncio"]):
        result = _run_in(tmp_path, ["-m", "portastreams", *args])
        assert result.returncode == 0, describe(result)
        assert "decoy" not in result.stdout + result.stderr


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["--help"])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    listed = re.findall(r"^    (\S+)", output, re.MULTILINE)
    assert listed == ["demo", "echo-server", "cat"]
    # Where the benchmarks went, in the help itself.
    assert "nox -s bench" in output
    assert "python -m benchmarks" in output


def test_the_usage_line_names_the_command_as_it_was_run() -> None:
    script = Path(sys.executable).with_name("portastreams")
    assert script.is_file(), "the console script is installed with the package"
    for command, expected in [
        ([str(script)], "usage: portastreams [-h]"),
        ([sys.executable, "-m", "portastreams"], "usage: python -m portastreams [-h]"),
    ]:
        result = subprocess.run(
            [*command, "--help"],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, describe(result)
        assert result.stdout.startswith(expected + " [--version] COMMAND ...\n")
        # An error names the program the same way.
        result = subprocess.run(
            [*command, "no-such-command"],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        name = expected.removeprefix("usage: ").removesuffix(" [-h]")
        assert f"{name}: error: argument COMMAND: invalid choice" in result.stderr


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli.main([])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err
