"""The orchestrator's side of the processes: the server and the load generators.

Both speak JSON lines over their stdin/stdout (see :mod:`stress.server` and
:mod:`stress.loadgen`); their stderr is collected for failure messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, TypeVar

#: The directory holding the ``stress`` package.
ROOT: Final = Path(__file__).resolve().parent.parent
#: How long a reply or an event may take by default.
TIMEOUT: Final = 60.0
_DEBUG_VARIABLES: Final = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC")


class ProcessFailed(AssertionError):
    """A child process answered with an error, died, or did not answer in time."""


def child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DEBUG_VARIABLES}
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


_Process = TypeVar("_Process", bound="JsonLinesProcess")


class JsonLinesProcess:
    """A child that reads JSON lines on stdin and writes JSON lines on stdout."""

    def __init__(self, module: str, args: list[str], name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=child_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[bytes] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump_stdout, args=(self.process.stdout,)),
            threading.Thread(target=self._pump_stderr, args=(self.process.stderr,)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _pump_stdout(self, pipe: IO[bytes]) -> None:
        with pipe:
            for line in pipe:
                self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self, pipe: IO[bytes]) -> None:
        with pipe:
            for line in pipe:
                self._stderr.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ProcessFailed(self._died(f"cannot send {message}: {exc!r}")) from None

    def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ProcessFailed(
                f"{self.name}: no answer within {timeout} s\n{self.stderr()[-4000:]}"
            ) from None
        if line is None:
            self.process.wait(timeout=TIMEOUT)
            raise ProcessFailed(self._died("exited"))
        message: dict[str, Any] = json.loads(line)
        return message

    def _died(self, what: str) -> str:
        return (
            f"{self.name} {what} (status {self.process.poll()})\n"
            f"--- stderr ---\n{self.stderr()[-4000:]}"
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        for thread in self._threads:
            thread.join(timeout=TIMEOUT)
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()

    def __enter__(self: _Process) -> _Process:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.kill()


class StressServer(JsonLinesProcess):
    """A :mod:`stress.server` process."""

    def __init__(
        self,
        impl: str,
        backend: str,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        handshake_timeout: float = 60.0,
        limit: int = 2**16,
    ) -> None:
        args = ["--impl", impl, "--backend", backend, "--limit", str(limit)]
        if certfile is not None:
            assert keyfile is not None
            args += ["--certfile", certfile, "--keyfile", keyfile]
            args += ["--handshake-timeout", str(handshake_timeout)]
        super().__init__("stress.server", args, f"server ({impl} on {backend})")
        self.impl = impl
        self.backend = backend
        hello = self.receive()
        if not hello.get("ok"):
            raise ProcessFailed(self._died(f"did not start: {hello}"))

    def call(
        self, cmd: str, *, reply_timeout: float = TIMEOUT, **args: Any
    ) -> dict[str, Any]:
        """Send a command (``args`` are its arguments) and return the answer."""
        self.send({"cmd": cmd, **args})
        reply = self.receive(reply_timeout)
        if not reply.pop("ok", False):
            raise ProcessFailed(f"{self.name}: {cmd} failed: {reply.get('error')}")
        return reply

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def exit(self) -> None:
        """Ask the server to leave, and wait for it."""
        self.call("exit")
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ProcessFailed(self._died("did not exit")) from None


class LoadGenerator(JsonLinesProcess):
    """A :mod:`stress.loadgen` process running one job."""

    def __init__(self, job: dict[str, Any], name: str = "load generator") -> None:
        super().__init__("stress.loadgen", [], name)
        self.send(job)

    def expect(self, event: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = self.receive(timeout)
        if message.get("event") != event:
            raise ProcessFailed(f"{self.name}: expected {event!r}, got {message}")
        return message

    def command(self, cmd: str) -> None:
        self.send({"cmd": cmd})

    def result(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        result = self.expect("result", timeout)
        self.process.wait(timeout=TIMEOUT)
        return result
