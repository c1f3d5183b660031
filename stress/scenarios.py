"""Client scenarios: one connection each, every byte checked.

These run in load-generator processes on asyncio's own streams (uvloop's loop
when installed): the load never depends on the library under test. Each
scenario returns an :class:`Outcome`: whether what came back is exactly what
the stress protocol (:mod:`stress.wire`) promises, how the connection ended,
and, where the server promises delivery, how many bytes were lost.

A *fault* scenario breaks the connection on purpose (a reset with
``SO_LINGER`` 0, a peer that vanishes mid-frame, ...); it is ``ok`` when the
client side saw nothing wrong before it broke the connection, and the server
is judged on surviving it (by the experiment).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from . import wire

HOST: Final = "127.0.0.1"
#: How long a scenario may wait for one expected event before it gives up.
STEP_TIMEOUT: Final = 30.0
#: The reader limit of client connections: clients read with ``read(n)``.
CLIENT_LIMIT: Final = 2**20


@dataclass
class Context:
    """Where the server is, and what scenarios need to reach it."""

    port: int
    tls_port: int | None = None
    cafile: str | None = None
    handshake_timeout: float = 60.0
    #: How long a scenario may wait for one expected event.
    step_timeout: float = STEP_TIMEOUT
    _tls: ssl.SSLContext | None = field(default=None, repr=False)

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self.cafile)
        return self._tls


@dataclass
class Outcome:
    """What one scenario saw."""

    scenario: str
    cid: int
    ok: bool = True
    #: True if the client broke the connection on purpose.
    fault: bool = False
    #: How the connection ended: "eof", "reset", "closed" (by us), "timeout",
    #: "refused", or "error <Type>".
    end: str = ""
    sent: int = 0
    received: int = 0
    #: Received bytes checked against what the protocol promises.
    verified: int = 0
    #: Bytes the server promised and did not deliver.
    lost: int = 0
    #: True if the server's ledger must match ``received`` exactly
    #: (``written_open <= received <= written``).
    exact: bool = False
    seconds: float = 0.0
    #: ``time.monotonic()`` when the scenario ended (comparable across
    #: processes on Linux: CLOCK_MONOTONIC is system-wide).
    finished_at: float = 0.0
    detail: str = ""

    def fail(self, detail: str) -> None:
        self.ok = False
        if not self.detail:
            self.detail = detail

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(ctx: Context, *, tls: bool = False) -> Pair:
    if tls:
        assert ctx.tls_port is not None
        return await asyncio.wait_for(
            asyncio.open_connection(
                HOST,
                ctx.tls_port,
                ssl=ctx.tls_context(),
                server_hostname="localhost",
                limit=CLIENT_LIMIT,
            ),
            ctx.step_timeout,
        )
    return await asyncio.wait_for(
        asyncio.open_connection(HOST, ctx.port, limit=CLIENT_LIMIT), ctx.step_timeout
    )


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with ``SO_LINGER`` 0: the kernel sends RST, not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), STEP_TIMEOUT)


def describe_error(exc: BaseException) -> str:
    """How a connection error ended a session, in the words of the reports.

    A broken pipe counts as a reset: the peer closed abortively (with our
    data unread, or before our next write).
    """
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return f"error {type(exc).__name__}"


async def read_all(
    ctx: Context,
    reader: asyncio.StreamReader,
    outcome: Outcome,
    limit: int | None = None,
) -> bytes:
    """Read until EOF (or error), recording how the stream ended."""
    chunks = []
    total = 0
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), ctx.step_timeout)
            if not data:
                outcome.end = "eof"
                break
            chunks.append(data)
            total += len(data)
            if limit is not None and total > limit:
                outcome.end = "overflow"
                break
    except (OSError, asyncio.TimeoutError) as exc:
        outcome.end = describe_error(exc)
    data = b"".join(chunks)
    outcome.received += len(data)
    return data


def expect_exactly(outcome: Outcome, got: bytes, expected: bytes) -> None:
    """A reply the server promised, followed by a clean EOF."""
    common = min(len(got), len(expected))
    if got[:common] != expected[:common]:
        index = next(i for i in range(common) if got[i] != expected[i])
        outcome.fail(f"byte {index} differs: got {got[index : index + 16]!r}")
        return
    outcome.verified += common
    if len(got) < len(expected):
        outcome.lost += len(expected) - len(got)
        outcome.fail(f"{len(expected) - len(got)} of {len(expected)} bytes missing")
    elif len(got) > len(expected):
        outcome.fail(f"{len(got) - len(expected)} unexpected bytes")
    if outcome.end != "eof":
        outcome.fail(f"ended by {outcome.end}, not EOF")


def random_line(rng: random.Random, cid: int, sequence: int) -> bytes:
    filler = rng.randbytes(rng.randint(0, 120)).hex().encode()
    return b"%d.%d %s\n" % (cid, sequence, filler)


def random_frames(rng: random.Random, count: int) -> list[bytes]:
    return [
        rng.randbytes(rng.choice([0, 1, 7, 100, 5000, 70000])) for _ in range(count)
    ]


# -- scenarios ----------------------------------------------------------------------

Scenario = Callable[[Context, int, random.Random, dict[str, Any]], Awaitable[Outcome]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


async def run_scenario(
    ctx: Context, name: str, cid: int, seed: int, params: dict[str, Any]
) -> Outcome:
    """Run one scenario; any unexpected client-side error is a failed outcome."""
    started = time.monotonic()
    try:
        outcome = await SCENARIOS[name](ctx, cid, random.Random(seed), params)
    except Exception as exc:
        outcome = Outcome(name, cid, end=describe_error(exc))
        outcome.fail(f"{type(exc).__name__}: {exc}")
    outcome.finished_at = time.monotonic()
    outcome.seconds = outcome.finished_at - started
    return outcome


@scenario
async def echo(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """``lines`` echoed one by one; ``half_close``: the last ones after write_eof()."""
    outcome = Outcome("echo", cid, exact=True)
    reader, writer = await connect(ctx, tls=bool(params.get("tls")))
    writer.write(wire.header(wire.ECHO, cid))
    lines = [random_line(rng, cid, i) for i in range(int(params.get("lines", 5)))]
    half_close = bool(params.get("half_close"))
    one_by_one = lines[: len(lines) // 2] if half_close else lines
    try:
        for line in one_by_one:
            writer.write(line)
            outcome.sent += len(line)
            reply = await asyncio.wait_for(
                reader.readexactly(len(line)), ctx.step_timeout
            )
            outcome.received += len(reply)
            expect_exactly_part(outcome, reply, line)
        if half_close:
            rest = b"".join(lines[len(one_by_one) :])
            writer.write(rest)
            writer.write_eof()
            outcome.sent += len(rest)
            expect_exactly(outcome, await read_all(ctx, reader, outcome), rest)
        else:
            outcome.end = "closed"
    except (OSError, EOFError, asyncio.TimeoutError) as exc:
        outcome.end = describe_error(exc)
        outcome.fail(f"{type(exc).__name__} during the exchange")
    await close(writer)
    return outcome


def expect_exactly_part(outcome: Outcome, got: bytes, expected: bytes) -> None:
    if got != expected:
        outcome.fail(f"reply {got[:40]!r} is not {expected[:40]!r}")
    else:
        outcome.verified += len(got)


@scenario
async def reset_during_read(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Upload part of a stream, let the server wait in read(), then reset."""
    outcome = Outcome("reset_during_read", cid, fault=True, end="closed")
    _reader, writer = await connect(ctx)
    size = rng.randint(1, 256 * 1024)
    writer.write(wire.header(wire.UPLOAD, cid) + wire.pattern(0, size))
    await writer.drain()
    outcome.sent = size
    await asyncio.sleep(rng.uniform(0.01, 0.05))
    reset(writer)
    return outcome


@scenario
async def reset_during_drain(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Ask for a large download, read a little, stop reading (drain() waits), reset."""
    outcome = Outcome("reset_during_drain", cid, fault=True, end="closed")
    reader, writer = await connect(ctx)
    size = 64 * 1024 * 1024
    writer.write(
        wire.header(wire.DOWNLOAD, cid)
        + wire.SIZE.pack(size)
        + wire.MILLISECONDS.pack(0)
    )
    await read_pattern(ctx, reader, outcome, rng.randint(1, 512 * 1024))
    await asyncio.sleep(rng.uniform(0.02, 0.08))
    reset(writer)
    return outcome


async def read_pattern(
    ctx: Context, reader: asyncio.StreamReader, outcome: Outcome, size: int
) -> None:
    """Read ``size`` pattern bytes (from offset ``outcome.received``), checking them."""
    while size > 0:
        data = await asyncio.wait_for(reader.read(min(size, 65536)), ctx.step_timeout)
        if not data:
            outcome.fail("EOF before the expected data")
            return
        bad = wire.pattern_mismatch(outcome.received, data)
        if bad is not None:
            outcome.fail(f"pattern broken at offset {bad}")
            return
        outcome.received += len(data)
        outcome.verified += len(data)
        size -= len(data)


@scenario
async def reset_during_write(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """The handler writes without drain(); the client reads a little and resets."""
    outcome = Outcome("reset_during_write", cid, fault=True, end="closed")
    reader, writer = await connect(ctx)
    writer.write(
        wire.header(wire.WRITE_NO_DRAIN, cid) + wire.SIZE.pack(8 * 1024 * 1024)
    )
    await read_pattern(ctx, reader, outcome, rng.randint(1, 64 * 1024))
    reset(writer)
    return outcome


@scenario
async def half_close_upload(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Upload, write_eof(); the server answers after our EOF."""
    outcome = Outcome("half_close_upload", cid, exact=True)
    reader, writer = await connect(ctx)
    size = rng.choice([0, 1, 1000, rng.randint(1, 2 * 1024 * 1024)])
    writer.write(wire.header(wire.UPLOAD, cid))
    for offset in range(0, size, 65536):
        writer.write(wire.pattern(offset, min(65536, size - offset)))
        await writer.drain()
    writer.write_eof()
    outcome.sent = size
    expect_exactly(outcome, await read_all(ctx, reader, outcome), b"OK %d\n" % size)
    await close(writer)
    return outcome


@scenario
async def truncated_frame(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Complete frames, then half a frame and write_eof(): replies to the complete ones."""
    outcome = Outcome("truncated_frame", cid, exact=True)
    reader, writer = await connect(ctx)
    payloads = random_frames(rng, rng.randint(0, 3))
    partial = wire.frame(rng.randbytes(rng.randint(1, 3000)))
    partial = partial[: rng.randint(1, len(partial) - 1)]
    sent = b"".join(wire.frame(p) for p in payloads) + partial
    writer.write(wire.header(wire.FRAMES, cid) + sent)
    writer.write_eof()
    outcome.sent = len(sent)
    expected = wire.expected_frame_replies(sent).reply
    expect_exactly(outcome, await read_all(ctx, reader, outcome), expected)
    await close(writer)
    return outcome


@scenario
async def vanish_mid_frame(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Send half a frame and vanish: close (FIN), or reset with ``params["reset"]``."""
    outcome = Outcome("vanish_mid_frame", cid, fault=True, end="closed")
    _reader, writer = await connect(ctx)
    partial = wire.frame(rng.randbytes(rng.randint(2, 100_000)))
    partial = partial[: rng.randint(1, len(partial) - 1)]
    writer.write(wire.header(wire.FRAMES, cid) + partial)
    await writer.drain()
    outcome.sent = len(partial)
    await asyncio.sleep(rng.uniform(0, 0.02))
    if params.get("reset"):
        reset(writer)
    else:
        writer.transport.abort()  # no wait: the peer is simply gone
    return outcome


@scenario
async def raise_handler(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """The handler echoes n lines, writes FAILING and raises: all of it, then EOF."""
    outcome = Outcome("raise_handler", cid, exact=True)
    reader, writer = await connect(ctx)
    lines = [random_line(rng, cid, i) for i in range(rng.randint(0, 5))]
    sent = b"".join(lines)
    writer.write(wire.header(wire.RAISE, cid) + bytes([len(lines)]) + sent)
    outcome.sent = len(sent)
    expect_exactly(outcome, await read_all(ctx, reader, outcome), sent + wire.FAILING)
    await close(writer)
    return outcome


@scenario
async def memory_error(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """The handler raises MemoryError at once: the client sees a clean EOF."""
    outcome = Outcome("memory_error", cid, exact=True)
    reader, writer = await connect(ctx)
    writer.write(wire.header(wire.MEMORY_ERROR, cid))
    expect_exactly(outcome, await read_all(ctx, reader, outcome), b"")
    await close(writer)
    return outcome


@scenario
async def timeout_handler(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """The handler's deadline cancels its readline() mid-line: echoes, TIMED_OUT, EOF."""
    outcome = Outcome("timeout_handler", cid, exact=True)
    reader, writer = await connect(ctx)
    lines = [random_line(rng, cid, i) for i in range(rng.randint(0, 4))]
    unfinished = random_line(rng, cid, 99)
    half_line = unfinished[: rng.randint(0, min(20, len(unfinished) - 1))]
    deadline = rng.randint(30, 120)
    sent = b"".join(lines) + half_line
    writer.write(
        wire.header(wire.TIMEOUT, cid) + wire.MILLISECONDS.pack(deadline) + sent
    )
    outcome.sent = len(sent)
    expected = b"".join(lines) + wire.TIMED_OUT
    expect_exactly(outcome, await read_all(ctx, reader, outcome), expected)
    await close(writer)
    return outcome


@scenario
async def cancelled_drain(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """The handler's deadline cancels drain(); what it wrote must still all arrive."""
    outcome = Outcome("cancelled_drain", cid, exact=True)
    reader, writer = await connect(ctx)
    deadline = rng.randint(20, 80)
    writer.write(
        wire.header(wire.DOWNLOAD, cid)
        + wire.SIZE.pack(256 * 1024 * 1024)
        + wire.MILLISECONDS.pack(deadline)
    )
    await asyncio.sleep((deadline + rng.randint(50, 150)) / 1000)
    data = await read_all(ctx, reader, outcome)
    bad = wire.pattern_mismatch(0, data)
    if bad is not None:
        outcome.fail(f"pattern broken at offset {bad}")
    else:
        outcome.verified = len(data)
    if outcome.end != "eof":
        outcome.fail(f"ended by {outcome.end}, not EOF")
    await close(writer)
    return outcome


@scenario
async def oversized_frame(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """A frame header above the limit: OVERSIZED, then EOF."""
    outcome = Outcome("oversized_frame", cid, exact=True)
    reader, writer = await connect(ctx)
    length = rng.randint(wire.MAX_FRAME + 1, 2**32 - 1)
    writer.write(wire.header(wire.FRAMES, cid) + wire.FRAME_HEADER.pack(length))
    expect_exactly(outcome, await read_all(ctx, reader, outcome), wire.OVERSIZED)
    await close(writer)
    return outcome


@scenario
async def garbage_frames(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Random bytes (sometimes after valid frames) as frames, then write_eof()."""
    outcome = Outcome("garbage_frames", cid)
    reader, writer = await connect(ctx)
    sent = b"".join(wire.frame(p) for p in random_frames(rng, rng.randint(0, 2)))
    sent += rng.randbytes(rng.randint(1, 4096))
    writer.write(wire.header(wire.FRAMES, cid) + sent)
    with contextlib.suppress(OSError):  # the server answered OVERSIZED and left
        writer.write_eof()
    outcome.sent = len(sent)
    expected = wire.expected_frame_replies(sent)
    got = await read_all(ctx, reader, outcome, limit=len(expected.reply) + 65536)
    if expected.oversized and outcome.end == "reset":
        # The server closed with our garbage unread: the kernel may reset.
        if got != expected.reply[: len(got)]:
            outcome.fail("the replies before the reset are wrong")
        outcome.verified = len(got)
    else:
        outcome.exact = True
        expect_exactly(outcome, got, expected.reply)
    await close(writer)
    return outcome


@scenario
async def unknown_mode(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """A header with a mode byte the server does not know: UNKNOWN_MODE, then EOF."""
    outcome = Outcome("unknown_mode", cid, exact=True)
    reader, writer = await connect(ctx)
    mode = rng.choice([bytes([b]) for b in range(256) if bytes([b]) not in wire.MODES])
    writer.write(wire.header(mode, cid))
    expect_exactly(outcome, await read_all(ctx, reader, outcome), wire.UNKNOWN_MODE)
    await close(writer)
    return outcome


@scenario
async def no_separator(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """``size`` bytes without a newline, then a newline and a PING line.

    The server skips over-long lines: what comes back is at most one line of
    the blob's tail, then the PING line.
    """
    outcome = Outcome("no_separator", cid)
    reader, writer = await connect(ctx)
    size = int(params["size"])
    blob = b"x" * min(size, 1 << 20)
    writer.write(wire.header(wire.ECHO, cid))
    sent = 0
    started = time.monotonic()
    while sent < size:
        step = min(len(blob), size - sent)
        writer.write(blob[:step] if step < len(blob) else blob)
        sent += step
        await asyncio.wait_for(writer.drain(), ctx.step_timeout)
    writer.write(b"\nPING\n")
    outcome.sent = sent + 6
    lines: list[bytes] = []
    while True:
        line = await asyncio.wait_for(reader.readline(), ctx.step_timeout)
        outcome.received += len(line)
        if not line:
            outcome.fail(f"EOF before PING (after {lines!r:.80})")
            break
        lines.append(line)
        if line == b"PING\n":
            break
    outcome.detail = f"{sent / (time.monotonic() - started) / 1e6:.0f} MB/s"
    *tail, _ = lines
    if len(tail) > 1 or any(line.rstrip(b"\n").strip(b"x") for line in tail):
        outcome.fail(f"unexpected replies before PING: {tail!r:.80}")
    else:
        outcome.verified = outcome.received
    outcome.end = "closed"
    await close(writer)
    return outcome


@scenario
async def slow_line(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Slowloris with a point: drip a line for ``seconds``, then expect its echo."""
    outcome = Outcome("slow_line", cid, exact=True)
    reader, writer = await connect(ctx)
    writer.write(wire.header(wire.ECHO, cid))
    deadline = time.monotonic() + float(params.get("seconds", 1.0))
    interval = float(params.get("interval", 0.1))
    line = bytearray()
    while time.monotonic() < deadline:
        byte = bytes([rng.choice(b"abcdefghijklmnopqrstuvwxyz")])
        writer.write(byte)
        line += byte
        await asyncio.sleep(interval * rng.uniform(0.5, 1.5))
    line += b"\n"
    writer.write(b"\n")
    outcome.sent = len(line)
    reply = await asyncio.wait_for(reader.readexactly(len(line)), ctx.step_timeout)
    outcome.received = len(reply)
    expect_exactly_part(outcome, reply, bytes(line))
    outcome.end = "closed"
    await close(writer)
    return outcome


@scenario
async def tls_echo(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Echo over TLS: the TLS listener still serves well-behaved clients."""
    outcome = await echo(ctx, cid, rng, {**params, "tls": True})
    outcome.scenario = "tls_echo"
    return outcome


@scenario
async def tls_stall(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Connect to the TLS port and never finish the handshake.

    Sends nothing, or the start of a ClientHello. The server must close the
    connection once its ssl_handshake_timeout has passed (with some slack).
    """
    outcome = Outcome("tls_stall", cid)
    assert ctx.tls_port is not None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, ctx.tls_port), ctx.step_timeout
    )
    if rng.random() < 0.5:
        # The start of a TLS record carrying a ClientHello, and no more.
        partial = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        writer.write(partial)
        outcome.sent = len(partial)
    started = time.monotonic()
    await read_all(ctx, reader, outcome)
    waited = time.monotonic() - started
    outcome.detail = f"closed after {waited:.2f} s"
    allowed = ctx.handshake_timeout + float(params.get("slack", 5.0))
    if outcome.end not in ("eof", "reset") or waited > allowed:
        outcome.fail(
            f"not closed within {allowed:.1f} s ({outcome.end}, {waited:.2f} s)"
        )
    await close(writer)
    return outcome


# -- until the server ends the connection (shutdown experiments) ----------------------


@scenario
async def echo_until_closed(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """Round trips (``max`` at most, ``pause`` s apart) until the server ends them.

    With ``pipeline`` n > 1, n requests are in flight at a time (the next
    one is sent before the reply to the last one is read), as HTTP/1.1
    clients may do: a server that closes then nearly always has a request
    unread. Well behaved all the same: on EOF, stop sending and close. Every
    reply is checked, in order; the ledger check then tells whether
    everything the server wrote arrived.
    """
    outcome = Outcome("echo_until_closed", cid, exact=True)
    reader, writer = await connect(ctx)
    writer.write(wire.header(wire.ECHO, cid))
    pause = float(params.get("pause", 0.0))
    count = int(params.get("max", 10**9))
    in_flight: collections.deque[bytes] = collections.deque()
    sequence = 0
    outcome.end = "closed"
    while sequence < count or in_flight:
        try:
            while sequence < count and len(in_flight) < int(params.get("pipeline", 1)):
                line = random_line(rng, cid, sequence)
                sequence += 1
                writer.write(line)
                in_flight.append(line)
                outcome.sent += len(line)
            reply = await asyncio.wait_for(reader.readline(), ctx.step_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            outcome.end = describe_error(exc)
            break
        except RuntimeError:
            # uvloop's write() on a transport that a reset already closed
            # (asyncio's drops the data silently): the connection was lost.
            if not writer.transport.is_closing():
                raise
            outcome.end = "reset"
            break
        outcome.received += len(reply)
        if not reply:
            outcome.end = "eof"
            break
        expected = in_flight.popleft()
        if reply != expected:
            outcome.fail(f"reply {reply[:40]!r} is not {expected[:40]!r}")
            break
        outcome.verified += len(reply)
        if pause:
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))
    await close(writer)
    return outcome


@scenario
async def download_until_closed(
    ctx: Context, cid: int, rng: random.Random, params: dict[str, Any]
) -> Outcome:
    """An endless download read at full speed until the server ends it."""
    outcome = Outcome("download_until_closed", cid, exact=True)
    reader, writer = await connect(ctx)
    writer.write(
        wire.header(wire.DOWNLOAD, cid)
        + wire.SIZE.pack(2**62)
        + wire.MILLISECONDS.pack(0)
    )
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), ctx.step_timeout)
            if not data:
                outcome.end = "eof"
                break
            bad = wire.pattern_mismatch(outcome.received, data)
            outcome.received += len(data)
            if bad is not None:
                outcome.fail(f"pattern broken at offset {bad}")
                break
            outcome.verified += len(data)
    except (OSError, asyncio.TimeoutError) as exc:
        outcome.end = describe_error(exc)
    await close(writer)
    return outcome
