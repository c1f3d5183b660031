"""The load-generator process: ``python -m stress.loadgen`` runs one job.

The job is the first line of stdin (JSON); further lines are commands
(``{"cmd": "go"}``...). Events and the result are JSON lines on stdout, the
last one ``{"event": "result", ...}``. The process runs asyncio's own streams
on uvloop's loop when it is installed (on asyncio's otherwise): the load never
depends on the library under test.

Jobs (``"job"``):

``hold``
    Open ``connections`` echo connections (at most ``concurrency`` connects in
    flight), report ``held``; on ``go`` make ``round_trips`` verified round
    trips on every connection at once and report ``round_trips``; on
    ``close`` close them all and report the result.
``sessions``
    Run ``sessions`` (``[scenario, cid, seed, params]`` each, see
    :mod:`stress.scenarios`) with at most ``concurrency`` at once, each
    starting at its ``at`` offset in seconds if given; report ``running``
    once ``announce`` sessions have started; the result lists every outcome.
``slowloris``
    Open ``connections`` echo connections and drip one byte per
    ``interval`` on each, never a newline, until ``stop``; then finish each
    line and check its echo.
``latency``
    One echo connection: sequential round trips of a short line for
    ``seconds``; the result has the latency percentiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import scenarios, wire
from .scenarios import Context, Outcome

Job = dict[str, Any]


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Commands:
    """Lines from stdin, delivered to the event loop by a thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in sys.stdin:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
        self._loop.call_soon_threadsafe(self._queue.put_nowait, '{"cmd": "eof"}')

    async def expect(self, cmd: str) -> None:
        got = json.loads(await self._queue.get())["cmd"]
        if got != cmd:
            raise RuntimeError(f"expected command {cmd!r}, got {got!r}")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- hold -------------------------------------------------------------------------


async def hold(job: Job, commands: Commands) -> dict[str, Any]:
    ctx = Context(job["port"])
    count = int(job["connections"])
    first_cid = int(job.get("first_cid", 0))
    limiter = asyncio.Semaphore(int(job.get("concurrency", 128)))
    failures: list[str] = []

    async def open_one(cid: int) -> scenarios.Pair | None:
        async with limiter:
            try:
                reader, writer = await scenarios.connect(ctx)
            except (OSError, asyncio.TimeoutError) as exc:
                failures.append(f"connect {cid}: {exc!r}")
                return None
            writer.write(wire.header(wire.ECHO, cid))
            return reader, writer

    started = time.monotonic()
    opened = await asyncio.gather(*(open_one(first_cid + i) for i in range(count)))
    pairs = [(first_cid + i, pair) for i, pair in enumerate(opened) if pair is not None]
    emit("held", connected=len(pairs), seconds=time.monotonic() - started)
    await commands.expect("go")

    rounds = int(job.get("round_trips", 10))
    rng = random.Random(int(job.get("seed", 0)))
    verified = 0

    async def round_trips(cid: int, pair: scenarios.Pair) -> None:
        nonlocal verified
        reader, writer = pair
        for sequence in range(rounds):
            line = b"%d.%d %s\n" % (cid, sequence, b"x" * rng.randint(0, 100))
            writer.write(line)
            try:
                reply = await asyncio.wait_for(
                    reader.readexactly(len(line)), scenarios.STEP_TIMEOUT
                )
            except (OSError, EOFError, asyncio.TimeoutError) as exc:
                failures.append(f"round trip {cid}.{sequence}: {exc!r}")
                return
            if reply != line:
                failures.append(f"round trip {cid}.{sequence}: {reply[:40]!r}")
                return
            verified += len(reply)

    started = time.monotonic()
    await asyncio.gather(*(round_trips(cid, pair) for cid, pair in pairs))
    seconds = time.monotonic() - started
    emit("round_trips", seconds=seconds)
    await commands.expect("close")
    await asyncio.gather(*(scenarios.close(writer) for _, (_, writer) in pairs))
    return {
        "connected": len(pairs),
        "round_trips": len(pairs) * rounds,
        "seconds": seconds,
        "verified": verified,
        "failures": failures[:20],
        "failure_count": len(failures),
    }


# -- sessions -------------------------------------------------------------------------


async def sessions(job: Job, commands: Commands) -> dict[str, Any]:
    ctx = Context(
        job["port"],
        job.get("tls_port"),
        job.get("cafile"),
        float(job.get("handshake_timeout", 60.0)),
        float(job.get("step_timeout", scenarios.STEP_TIMEOUT)),
    )
    limiter = asyncio.Semaphore(int(job.get("concurrency", 64)))
    announce = int(job.get("announce", 0))
    started_count = 0
    start = time.monotonic()

    async def one(name: str, cid: int, seed: int, params: dict[str, Any]) -> Outcome:
        nonlocal started_count
        at = float(params.get("at", 0.0))
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with limiter:
            started_count += 1
            if started_count == announce:
                asyncio.get_running_loop().call_later(
                    float(job.get("announce_delay", 0.0)), emit, "running"
                )
            return await scenarios.run_scenario(ctx, name, cid, seed, params)

    outcomes = await asyncio.gather(
        *(one(name, cid, seed, params) for name, cid, seed, params in job["sessions"])
    )
    return {
        "outcomes": [outcome.as_json() for outcome in outcomes],
        "seconds": time.monotonic() - start,
    }


# -- slowloris --------------------------------------------------------------------------


async def slowloris(job: Job, commands: Commands) -> dict[str, Any]:
    ctx = Context(job["port"])
    count = int(job["connections"])
    first_cid = int(job.get("first_cid", 0))
    interval = float(job.get("interval", 0.1))
    rng = random.Random(int(job.get("seed", 0)))
    limiter = asyncio.Semaphore(128)
    stop = asyncio.Event()
    failures: list[str] = []
    dripped = 0
    verified = 0

    async def open_one(cid: int) -> scenarios.Pair | None:
        async with limiter:
            try:
                reader, writer = await scenarios.connect(ctx)
            except (OSError, asyncio.TimeoutError) as exc:
                failures.append(f"connect {cid}: {exc!r}")
                return None
            writer.write(wire.header(wire.ECHO, cid))
            return reader, writer

    async def drip(pair: scenarios.Pair) -> None:
        nonlocal dripped, verified
        reader, writer = pair
        line = bytearray()
        await asyncio.sleep(rng.uniform(0, interval))
        while not stop.is_set():
            byte = bytes([rng.choice(b"abcdefghijklmnopqrstuvwxyz")])
            writer.write(byte)
            line += byte
            dripped += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * rng.uniform(0.5, 1.5))
        line += b"\n"
        writer.write(b"\n")
        try:
            reply = await asyncio.wait_for(
                reader.readexactly(len(line)), scenarios.STEP_TIMEOUT
            )
        except (OSError, EOFError, asyncio.TimeoutError) as exc:
            failures.append(f"slow line: {exc!r}")
        else:
            if reply == line:
                verified += len(reply)
            else:
                failures.append(f"slow line echo {reply[:40]!r}")
        await scenarios.close(writer)

    opened = await asyncio.gather(*(open_one(first_cid + i) for i in range(count)))
    pairs = [pair for pair in opened if pair is not None]
    emit("held", connected=len(pairs))
    tasks = [asyncio.ensure_future(drip(pair)) for pair in pairs]
    await commands.expect("stop")
    stop.set()
    await asyncio.gather(*tasks)
    return {
        "connected": len(pairs),
        "dripped": dripped,
        "verified": verified,
        "failures": failures[:20],
        "failure_count": len(failures),
    }


# -- latency ------------------------------------------------------------------------------


async def latency(job: Job, commands: Commands) -> dict[str, Any]:
    ctx = Context(job["port"])
    reader, writer = await scenarios.connect(ctx)
    writer.write(wire.header(wire.ECHO, int(job.get("cid", 0))))
    samples: list[float] = []
    failures: list[str] = []
    line = b"ping " + b"p" * 58 + b"\n"
    deadline = time.monotonic() + float(job["seconds"])
    while time.monotonic() < deadline:
        started = time.perf_counter()
        writer.write(line)
        try:
            reply = await asyncio.wait_for(
                reader.readexactly(len(line)), scenarios.STEP_TIMEOUT
            )
        except (OSError, EOFError, asyncio.TimeoutError) as exc:
            failures.append(repr(exc))
            break
        samples.append(time.perf_counter() - started)
        if reply != line:
            failures.append(f"reply {reply[:40]!r}")
            break
        await asyncio.sleep(float(job.get("pause", 0.002)))
    await scenarios.close(writer)
    milliseconds = [s * 1000 for s in samples]
    return {
        "samples": len(samples),
        "p50": percentile(milliseconds, 0.50) if samples else None,
        "p99": percentile(milliseconds, 0.99) if samples else None,
        "max": max(milliseconds) if samples else None,
        "mean": statistics.fmean(milliseconds) if samples else None,
        "failures": failures,
        "failure_count": len(failures),
    }


JOBS: dict[str, Callable[[Job, Commands], Awaitable[dict[str, Any]]]] = {
    "hold": hold,
    "sessions": sessions,
    "slowloris": slowloris,
    "latency": latency,
}


async def run(job: Job) -> None:
    commands = Commands(asyncio.get_running_loop())
    result = await JOBS[job["job"]](job, commands)
    emit("result", **result)


def main() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    job = json.loads(sys.stdin.readline())
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(job))
    else:
        uvloop.run(run(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
