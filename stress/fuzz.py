"""The server fuzz target: random bytes and random disconnects into real servers.

``python -m stress.fuzz [--seconds S | --cases N] [--backend B] [--target T] [--seed N]``

Targets, each a separate server process on each backend:

``echo_server``
    the seed's example, ``examples/echo_server.py``;
``echo_cli``
    ``python -m portastreams echo-server``;
``lines`` / ``frames`` / ``chat``
    the tutorial's line protocol, framed protocol and chat handlers
    (``docs/tutorial/code``), served by :mod:`stress.fuzz_host`.

Each *case* is one connection: random or mutated-valid bytes, cut into random
chunks with random pauses, ended at random (FIN, RST, half-close and read,
read a little then close, or abandon mid-send). The oracles, per target:

* the server process never dies and answers a well-formed probe correctly
  after every batch of cases;
* when the clients are gone, its descriptors (``/proc/<pid>/fd``) are back to
  what they were before the first case: nothing leaked, no connection hung;
* it logs nothing but handler failures (fuzz_host counts its log records;
  for the examples, stderr may not contain asyncio/trio internals:
  ``Task exception was never retrieved``, ``Exception in callback``,
  ``ResourceWarning``, ...);
* Ctrl+C (or closing stdin) stops it cleanly, exit status 0.

Prints a table of cases run per target and backend; exit status 1 on any
finding. Seeded: the same seed gives the same cases.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Final

from .processes import ROOT, child_environment

HOST: Final = "127.0.0.1"
BACKEND_NAMES: Final = ("asyncio", "uvloop", "trio")
TARGETS: Final = ("echo_server", "echo_cli", "lines", "frames", "chat")
#: Cases between two probes.
BATCH: Final = 25
#: How long a client waits for the server in one case.
CASE_TIMEOUT: Final = 3.0
#: What in a server's stderr is never acceptable.
BAD_MARKERS: Final = (
    "Task exception was never retrieved",
    "Exception in callback",
    "ResourceWarning",
    "was never awaited",
    "Fatal error",
    "Exception ignored",
    "Task was destroyed",
)
FRAME: Final = struct.Struct("!I")


# -- the servers -----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A well-formed request and the exact reply it must get."""

    request: bytes
    reply: bytes
    #: The server closes after replying (the seed's echo example does).
    closes: bool = False


PROBES: Final = {
    "echo_server": Probe(b"probe", b"probe", closes=True),
    "echo_cli": Probe(b"probe\n", b"probe\n"),
    "lines": Probe(b"hello\n", b"HELLO\n"),
    "frames": Probe(FRAME.pack(3) + b"abc", FRAME.pack(3) + b"cba"),
    "chat": Probe(b"hi\n", b"> hi\n"),
}


class TargetServer:
    """A target's server process; its output is collected by threads."""

    def __init__(self, target: str, backend: str) -> None:
        self.target = target
        python = [sys.executable, "-W", "default"]
        if target == "echo_server":
            argv = [
                *python,
                "examples/echo_server.py",
                "--backend",
                backend,
                "--port",
                "0",
            ]
        elif target == "echo_cli":
            argv = [*python, "-m", "portastreams", "echo-server", "--backend", backend]
            argv += ["--port", "0"]
        else:
            argv = [*python, "-m", "stress.fuzz_host", "--handler", target]
            argv += ["--backend", backend]
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=child_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._port_line = threading.Event()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(
                target=self._pump, args=(self.process.stdout, self.stdout)
            ),
            threading.Thread(
                target=self._pump, args=(self.process.stderr, self.stderr)
            ),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        self.port = self._wait_for_port()

    def _pump(self, pipe: IO[str], lines: list[str]) -> None:
        with pipe:
            for line in pipe:
                lines.append(line)
                if lines is self.stdout and (
                    "Serving on" in line or line.startswith("PORT")
                ):
                    self._port_line.set()
        self._port_line.set()

    def _wait_for_port(self) -> int:
        if not self._port_line.wait(30):
            raise RuntimeError(f"{self.target}: no port within 30 s\n{self.output()}")
        for line in self.stdout:
            if line.startswith("PORT "):
                return int(line.split()[1])
            if line.startswith("Serving on ("):
                _, port = ast.literal_eval(line.removeprefix("Serving on ").strip())
                return int(port)
            match = re.match(r"Serving on [\d.]+:(\d+) ", line)
            if match:
                return int(match.group(1))
        raise RuntimeError(f"{self.target}: did not start\n{self.output()}")

    def fds(self) -> int | None:
        try:
            return len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except OSError:
            return None

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int | None:
        """Ctrl+C (the examples) or end of stdin (fuzz_host); the exit status."""
        if self.alive() and self.target in ("echo_server", "echo_cli"):
            self.process.send_signal(signal.SIGINT)
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = None
        for thread in self._threads:
            thread.join(timeout=10)
        return status

    def output(self) -> str:
        return f"--- stdout ---\n{''.join(self.stdout)[-3000:]}--- stderr ---\n{''.join(self.stderr)[-3000:]}"

    def log_findings(self) -> list[str]:
        return log_findings(self.stdout, self.stderr)


def log_findings(stdout: Sequence[str], stderr: Sequence[str]) -> list[str]:
    """Log records other than handler failures (fuzz_host), or bad stderr markers."""
    findings = []
    text = "".join(stderr)
    for marker in BAD_MARKERS:
        if marker in text:
            findings.append(f"stderr contains {marker!r}")
    for line in stdout:
        if line.startswith("LOGS "):
            counts: dict[str, int] = json.loads(line[5:])
            for key, count in counts.items():
                level = key.rsplit("/", 1)[-1]
                if key != "handler failure" and level in (
                    "WARNING",
                    "ERROR",
                    "CRITICAL",
                ):
                    findings.append(f"{count} log records {key}")
    return findings


# -- the cases -------------------------------------------------------------------------


def valid_payload(target: str, rng: random.Random) -> bytes:
    if target == "frames":
        return b"".join(
            FRAME.pack(len(p)) + p
            for p in (
                rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))
            )
        )
    lines = (rng.randbytes(rng.randint(0, 80)).replace(b"\n", b"") for _ in range(4))
    return b"".join(line + b"\n" for line in lines)


def mutate(valid: bytes, rng: random.Random) -> bytes:
    """Flip, cut, duplicate, overwrite or prefix with a huge frame length."""
    data = bytearray(valid)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not data or choice < 0.25:
            data[rng.randint(0, len(data)) :] = rng.randbytes(rng.randint(0, 40))
        elif choice < 0.5:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.7:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.85:
            cut = rng.randrange(len(data))
            data[cut:cut] = data[: rng.randint(0, len(data))]
        else:
            data[:0] = FRAME.pack(rng.choice([2**31, 2**32 - 1, 1 << 20, 1 << 21]))
    return bytes(data)


def make_case(target: str, rng: random.Random) -> tuple[list[bytes], str]:
    """The chunks to send and how to end; a pure function of the generator."""
    kind = rng.random()
    if kind < 0.3:
        data = rng.randbytes(rng.choice([0, 1, 7, 100, 4096, 70_000]))
    elif kind < 0.45:
        data = b"y" * rng.choice([65, 1000, 70_000, 300_000])  # no separator
    else:
        data = mutate(valid_payload(target, rng), rng)
    chunks = []
    while data:
        size = rng.choice([1, 2, 3, 17, 512, 65536])
        chunks.append(data[:size])
        data = data[size:]
    ending = rng.choice(["fin", "rst", "half_close_read", "read_then_close", "abandon"])
    return chunks, ending


async def run_case(
    port: int, chunks: list[bytes], ending: str, rng: random.Random
) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, port), CASE_TIMEOUT
    )
    try:
        stop_after = len(chunks) if ending != "abandon" else rng.randint(0, len(chunks))
        for chunk in chunks[:stop_after]:
            writer.write(chunk)
            if rng.random() < 0.2:
                await asyncio.sleep(rng.uniform(0, 0.01))
        if ending == "half_close_read":
            writer.write_eof()
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                await asyncio.wait_for(reader.read(), CASE_TIMEOUT)
        elif ending == "read_then_close":
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                await asyncio.wait_for(reader.read(65536), rng.uniform(0, 0.05))
        elif ending == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            writer.transport.abort()
        elif ending == "abandon":
            await asyncio.sleep(rng.uniform(0, 0.2))
    except OSError:
        pass  # the server may close or reset first: that is allowed
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), CASE_TIMEOUT)


async def probe(port: int, check: Probe) -> str | None:
    """None if the probe got its exact reply, else what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"probe could not connect: {exc!r}"
    try:
        writer.write(check.request)
        got = await asyncio.wait_for(reader.readexactly(len(check.reply)), 5)
        if got != check.reply:
            return f"probe got {got!r}, not {check.reply!r}"
        if check.closes:
            rest = await asyncio.wait_for(reader.read(), 5)
            if rest:
                return f"probe: {rest!r} after the reply"
        return None
    except (OSError, EOFError, asyncio.TimeoutError) as exc:
        return f"probe failed: {exc!r}"
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def _limited(
    limiter: asyncio.Semaphore, port: int, case: tuple[list[bytes], str], seed: int
) -> None:
    async with limiter:
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await run_case(port, *case, random.Random(seed))


@dataclass
class FuzzResult:
    target: str
    backend: str
    cases: int = 0
    probes: int = 0
    findings: list[str] = field(default_factory=list)


async def fuzz_one(
    server: TargetServer,
    backend: str,
    rng: random.Random,
    more: Callable[[int], bool],
    concurrency: int,
) -> FuzzResult:
    result = FuzzResult(server.target, backend)
    check = PROBES[server.target]
    first = await probe(server.port, check)
    if first is not None:
        result.findings.append(f"before fuzzing: {first}")
        return result
    result.probes += 1
    await asyncio.sleep(0.2)
    baseline = server.fds()
    while more(result.cases):
        batch = [make_case(server.target, rng) for _ in range(BATCH)]
        seeds = [rng.randrange(2**32) for _ in batch]
        limiter = asyncio.Semaphore(concurrency)
        await asyncio.gather(
            *(
                _limited(limiter, server.port, case, seed)
                for case, seed in zip(batch, seeds, strict=True)
            )
        )
        result.cases += len(batch)
        if not server.alive():
            result.findings.append(f"the server died\n{server.output()}")
            return result
        problem = await probe(server.port, check)
        result.probes += 1
        if problem is not None:
            result.findings.append(f"after {result.cases} cases: {problem}")
            return result
    deadline = time.monotonic() + 5
    while server.fds() != baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if server.fds() != baseline:
        result.findings.append(
            f"descriptors {baseline} -> {server.fds()} after the cases"
        )
    return result


def fuzz(
    target: str, backend: str, seed: int, more: Callable[[int], bool], concurrency: int
) -> FuzzResult:
    server = TargetServer(target, backend)
    try:
        result = asyncio.run(
            fuzz_one(server, backend, random.Random(seed), more, concurrency)
        )
    finally:
        status = server.stop()
    if status != 0:
        result.findings.append(
            f"did not stop cleanly (status {status})\n{server.output()}"
        )
    result.findings += server.log_findings()
    return result


def count_limit(cases: int) -> Callable[[int], bool]:
    """Go on until ``cases`` cases ran (rounded up to a batch)."""

    def more(done: int) -> bool:
        return done < cases

    return more


def time_limit(seconds: float) -> Callable[[int], bool]:
    """Go on for ``seconds`` from now (finishing the batch under way)."""
    deadline = time.monotonic() + seconds

    def more(done: int) -> bool:
        return time.monotonic() < deadline

    return more


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stress.fuzz", description=__doc__.splitlines()[0]
    )
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument(
        "--seconds", type=float, help="per target and backend (default 20)"
    )
    limit.add_argument("--cases", type=int, help="per target and backend")
    parser.add_argument("--backend", action="append", choices=BACKEND_NAMES)
    parser.add_argument("--target", action="append", choices=TARGETS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    # The fuzz clients write into connections they reset: asyncio (client
    # side) warns about each such write. The servers' logs are what counts.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    results = []
    for target in args.target or TARGETS:
        for backend in args.backend or BACKEND_NAMES:
            if args.cases is not None:
                more = count_limit(args.cases)
            else:
                more = time_limit(args.seconds or 20.0)
            result = fuzz(target, backend, args.seed, more, args.concurrency)
            results.append(result)
            verdict = "ok" if not result.findings else "FINDINGS"
            print(
                f"| {target} | {backend} | {result.cases:,} | {result.probes} | {verdict} |",
                flush=True,
            )
            for finding in result.findings:
                print(f"    - {finding}", flush=True)
    total = sum(r.cases for r in results)
    print(
        f"{total:,} fuzz cases run; {sum(bool(r.findings) for r in results)} targets with findings"
    )
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
