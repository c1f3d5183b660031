"""``python -m portastreams``: ``demo``, ``echo-server`` and ``bench``."""

from __future__ import annotations

import re
import socket
import sys
import threading
import types
from collections.abc import Sequence

import anyio
import pytest
from subprocesses import BACKEND_NAMES, Background, describe, run_python

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


# -- bench and help -------------------------------------------------------------


def test_bench_outside_a_source_checkout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "benchmarks", None)  # "not importable"
    assert _cli.main(["bench", "--quick"]) == 2
    captured = capsys.readouterr()
    assert "run from a source checkout" in captured.err
    assert captured.out == ""


def test_bench_passes_its_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        calls.append(argv)
        return 7

    package = types.ModuleType("benchmarks")
    package.__path__ = []
    entry = types.ModuleType("benchmarks.__main__")
    entry.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks", package)
    monkeypatch.setitem(sys.modules, "benchmarks.__main__", entry)
    assert _cli.main(["bench", "--help", "-n", "3"]) == 7
    assert calls == [["--help", "-n", "3"]]


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["--help"])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    for command in ("demo", "echo-server", "bench"):
        assert command in output


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli.main([])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err
