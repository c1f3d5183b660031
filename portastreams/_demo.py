"""``python -m portastreams demo``: the same stream code on every installed backend.

For each backend (asyncio, uvloop, trio -- whichever are installed) the demo
runs three small client/server exchanges over TCP on 127.0.0.1 and prints
what crossed the wire, as the receiving side saw it:

* **echo** -- the echo server and client of asyncio's documentation;
* **lines** -- a line protocol with a small ``limit``: an over-long line makes
  ``readline()`` raise ``ValueError`` (from ``LimitOverrunError``), drops the
  line and the connection carries on;
* **framed** -- length-prefixed frames read with ``readexactly()``, including
  one larger than the reader's limit, ending with a truncated frame that
  raises ``IncompleteReadError``.

Each exchange checks its results and has a deadline; the summary gives
OK/FAIL per backend.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import struct
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

import anyio

from ._connections import open_connection
from ._exceptions import IncompleteReadError, LimitOverrunError
from ._reader import StreamReader
from ._run import BACKENDS, install_hint, is_available, run
from ._server import start_server
from ._writer import StreamWriter

__all__ = ["SCENARIOS", "DemoFailure", "demo"]

#: Deadline for each exchange.
TIMEOUT: Final = 10.0
#: The line protocol's reader limit (kept small to show the overrun).
LINE_LIMIT: Final = 32


class DemoFailure(Exception):
    """An exchange did not produce what it should have."""


@dataclass
class Transcript:
    """What crossed the wire during one exchange, in order."""

    lines: list[str] = field(default_factory=list)
    server_errors: list[BaseException] = field(default_factory=list)

    def wire(self, direction: str, data: bytes, label: str = "") -> None:
        """Record bytes received, e.g. ``wire("client -> server", b"hi")``."""
        prefix = f"{label} " if label else ""
        self.lines.append(f"{direction:<17} {prefix}{show(data)}")

    def note(self, who: str, text: str) -> None:
        """Record an event that is not data, e.g. an exception a read raised."""
        self.lines.append(f"{who:<17} {text}")


def show(data: bytes, width: int = 40) -> str:
    """``repr`` of ``data``, shortened with its length when it is long."""
    if len(data) <= width:
        return repr(data)
    return f"{data[:width]!r}... ({len(data)} bytes)"


Handler = Callable[[StreamReader, StreamWriter], Awaitable[None]]


def _recording(transcript: Transcript, handler: Handler) -> Handler:
    """Wrap a server handler so that its failure fails the exchange."""

    async def wrapper(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except Exception as exc:
            transcript.server_errors.append(exc)
            transcript.note("server", f"handler failed: {exc!r}")

    return wrapper


def _expect(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise DemoFailure(f"{what}: expected {expected!r}, got {got!r}")


def _address(sockname: object) -> str:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = sockname[0], sockname[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(sockname)


# -- echo ---------------------------------------------------------------------


async def echo(transcript: Transcript) -> None:
    """The echo server and client of asyncio's documentation, two messages, then EOF."""

    async def handle_echo(reader: StreamReader, writer: StreamWriter) -> None:
        while data := await reader.read(100):
            transcript.wire("client -> server", data)
            writer.write(data)
            await writer.drain()
        transcript.note("client -> server", "EOF")

    server = await start_server(_recording(transcript, handle_echo), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await _open(port)
        transcript.note(
            "client",
            f"connected {_address(writer.get_extra_info('sockname'))}"
            f" -> {_address(writer.get_extra_info('peername'))}",
        )
        for message in (b"Hello World!", b"portastreams says hi"):
            writer.write(message)
            reply = await reader.readexactly(len(message))
            transcript.wire("server -> client", reply)
            _expect("echo", reply, message)
        writer.write_eof()
        _expect("after EOF", await reader.read(), b"")
        transcript.note("server -> client", "EOF (handler returned, server closed)")
        writer.close()
        await writer.wait_closed()


# -- lines --------------------------------------------------------------------


async def lines(transcript: Transcript) -> None:
    """A line protocol; one line is longer than the server's limit."""

    async def handle_lines(reader: StreamReader, writer: StreamWriter) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError as exc:
                inner = exc.__cause__ or exc.__context__
                origin = (
                    f" (from LimitOverrunError, consumed={inner.consumed})"
                    if isinstance(inner, LimitOverrunError)
                    else ""
                )
                transcript.note(
                    "server", f"readline() raised ValueError: {exc}{origin}"
                )
                writer.write(b"ERROR line longer than %d bytes\n" % LINE_LIMIT)
                continue
            if not line:
                transcript.note("client -> server", "EOF")
                return
            transcript.wire("client -> server", line)
            writer.write(b"OK " + line.upper())

    server = await start_server(
        _recording(transcript, handle_lines), "127.0.0.1", 0, limit=LINE_LIMIT
    )
    port = server.sockets[0].getsockname()[1]
    transcript.note("server", f"reader limit={LINE_LIMIT}")
    async with server:
        reader, writer = await _open(port)
        too_long = b"x" * (2 * LINE_LIMIT) + b"\n"
        exchanges = [
            (b"hello\n", b"OK HELLO\n"),
            (too_long, b"ERROR line longer than %d bytes\n" % LINE_LIMIT),
            (b"still here\n", b"OK STILL HERE\n"),
        ]
        for line, expected in exchanges:
            writer.write(line)
            reply = await reader.readline()
            transcript.wire("server -> client", reply)
            _expect("reply", reply, expected)
        writer.write_eof()
        _expect("after EOF", await reader.readline(), b"")
        transcript.note("server -> client", "EOF (handler returned, server closed)")
        writer.close()
        await writer.wait_closed()


# -- framed -------------------------------------------------------------------

_HEADER: Final = struct.Struct("!I")


async def framed(transcript: Transcript) -> None:
    """Length-prefixed frames with ``readexactly``; the server returns them reversed."""

    async def handle_frames(reader: StreamReader, writer: StreamWriter) -> None:
        while True:
            try:
                (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                payload = await reader.readexactly(size)
            except IncompleteReadError as exc:
                transcript.note(
                    "server",
                    f"readexactly() raised IncompleteReadError: {exc} "
                    f"(partial={show(exc.partial)})",
                )
                return
            transcript.wire("client -> server", payload, f"frame[{size}]")
            writer.write(_HEADER.pack(size) + payload[::-1])
            await writer.drain()

    server = await start_server(_recording(transcript, handle_frames), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await _open(port)
        # 120 KiB, more than the reader's limit and than one receive.
        big = b"".join(b"%05d " % i for i in range(20480))
        for payload in (b"hello", b"", big):
            writer.write(_HEADER.pack(len(payload)) + payload)
            await writer.drain()
            (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
            reply = await reader.readexactly(size)
            transcript.wire("server -> client", reply, f"frame[{size}]")
            _expect("reversed frame", reply, payload[::-1])
        # A truncated frame: 10 bytes announced, 3 sent, then EOF.
        writer.write(_HEADER.pack(10) + b"abc")
        writer.write_eof()
        _expect("after truncated frame", await reader.read(), b"")
        transcript.note("server -> client", "EOF (handler returned, server closed)")
        writer.close()
        await writer.wait_closed()


async def _open(port: int) -> tuple[StreamReader, StreamWriter]:
    return await open_connection("127.0.0.1", port)


#: ``(name, description, exchange)`` in the order the demo runs them.
SCENARIOS: list[tuple[str, str, Callable[[Transcript], Awaitable[None]]]] = [
    ("echo", "echo server and client, as in asyncio's documentation", echo),
    ("lines", f"line protocol, readline() with limit={LINE_LIMIT}", lines),
    ("framed", "length-prefixed frames with readexactly()", framed),
]


# -- running ------------------------------------------------------------------


@dataclass
class Outcome:
    """How one exchange went on one backend."""

    scenario: str
    transcript: Transcript
    error: BaseException | None = None


async def _run_scenario(
    name: str, scenario: Callable[[Transcript], Awaitable[None]]
) -> Outcome:
    transcript = Transcript()
    outcome = Outcome(name, transcript)
    try:
        with anyio.fail_after(TIMEOUT):
            await scenario(transcript)
        if transcript.server_errors:
            raise DemoFailure(f"server handler failed: {transcript.server_errors[0]!r}")
    except Exception as exc:
        outcome.error = exc
    return outcome


async def _run_all(
    scenarios: Sequence[tuple[str, str, Callable[[Transcript], Awaitable[None]]]],
    out: TextIO,
) -> list[Outcome]:
    outcomes = []
    for name, description, scenario in scenarios:
        outcome = await _run_scenario(name, scenario)
        outcomes.append(outcome)
        print(f"\n  {name}: {description}", file=out)
        for line in outcome.transcript.lines:
            print(f"    {line}", file=out)
        status = "ok" if outcome.error is None else f"FAILED: {outcome.error!r}"
        print(f"    -> {status}", file=out, flush=True)
    return outcomes


def describe_backend(name: str) -> str:
    """E.g. ``trio 0.27.0`` or ``asyncio (CPython 3.12.1)``."""
    if name == "asyncio":
        return (
            f"asyncio ({platform.python_implementation()} {platform.python_version()})"
        )
    package = "uvloop" if name == "uvloop" else name
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "?"
    return f"asyncio on uvloop {version}" if name == "uvloop" else f"{name} {version}"


def demo(backends: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run every scenario on each backend; return 0 if all passed, else 1.

    ``backends`` defaults to every backend; those not installed are skipped
    (and reported as such), unless asked for explicitly, which is a failure.
    """
    stream = sys.stdout if out is None else out
    explicit = backends is not None
    names = list(BACKENDS) if backends is None else list(backends)
    summary: list[tuple[str, str]] = []
    failed = False
    print(
        f"portastreams demo: {len(SCENARIOS)} exchanges over TCP on 127.0.0.1 "
        f"per backend; each line is what the receiving side read",
        file=stream,
    )
    for name in names:
        if not is_available(name):
            if explicit:
                failed = True
                summary.append((name, f"FAIL  not installed: {install_hint(name)}"))
            else:
                summary.append((name, f"SKIP  not installed: {install_hint(name)}"))
            continue
        print(f"\n=== {name}: {describe_backend(name)} ===", file=stream, flush=True)
        try:
            outcomes = run(functools.partial(_run_all, SCENARIOS, stream), name)
        except Exception as exc:  # the backend itself failed to run
            failed = True
            summary.append((name, f"FAIL  {exc!r}"))
            continue
        bad = [o for o in outcomes if o.error is not None]
        if bad:
            failed = True
            details = "; ".join(f"{o.scenario}: {o.error!r}" for o in bad)
            summary.append((name, f"FAIL  {details}"))
        else:
            summary.append((name, f"OK    {len(outcomes)}/{len(outcomes)} exchanges"))
    print("\nSummary", file=stream)
    for name, result in summary:
        print(f"  {name:<8} {result}", file=stream)
    stream.flush()
    return 1 if failed else 0
