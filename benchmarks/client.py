"""One measurement: one contender runs one workload, in this (fresh) process.

``python -m benchmarks.client WORKLOAD CONTENDER PORT SIZE [--cpu N]
[--profile PATH]`` prints one JSON object on stdout: wall and CPU seconds of
the workload (from before the connect to the verified end), the peak RSS of
the process (``VmHWM``, see :func:`_max_rss_kib`) and its peak before the
workload. Only the modules the contender
needs are imported (asyncio contenders do not import trio), so the RSS
figures are the contender's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from . import contenders, patterns, workloads

HOST = "127.0.0.1"

Detail = dict[str, int]
Measurement = tuple[float, float, Detail]


class _Timer:
    """Times the workload from inside the event loop (loop start-up excluded)."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self.baseline_rss_kib = 0
        self.user_seconds = 0.0
        self.system_seconds = 0.0

    async def measure(self, workload: Awaitable[Detail]) -> Measurement:
        profiler = None
        if self.profile is not None:
            import cProfile

            profiler = cProfile.Profile()
        self.baseline_rss_kib = _max_rss_kib()
        start_times = os.times()
        start_cpu = time.process_time()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            detail = await workload
        finally:
            if profiler is not None:
                profiler.disable()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - start_cpu
        end_times = os.times()
        self.user_seconds = end_times.user - start_times.user
        self.system_seconds = end_times.system - start_times.system
        if profiler is not None:
            assert self.profile is not None
            profiler.dump_stats(self.profile)
        return seconds, cpu, detail


def _prepare(workload: str, size: int) -> None:
    """Build the patterns before the clock starts."""
    patterns.line_block()
    patterns.stripped_line_block()
    patterns.payload_block()
    patterns.bulk_reference()
    patterns.upload_chunks()
    patterns.messages(0)
    if workload == "upload":
        patterns.upload_checksum(size * patterns.UPLOAD_CHUNK)
    if workload == "fanin":
        for connection in range(workloads.FANIN_CONNECTIONS):
            patterns.messages(connection)


def _run_streams_api(
    contender: contenders.Contender, workload: str, port: int, size: int, timer: _Timer
) -> Measurement:
    from . import _streams_api

    function = _streams_api.WORKLOADS[workload]

    if contender.library == "asyncio-streams":
        import asyncio

        async def asyncio_gather(
            functions: list[Callable[[], Coroutine[Any, Any, None]]],
        ) -> None:
            await asyncio.gather(*(function() for function in functions))

        async def asyncio_main() -> Measurement:
            def connect() -> Awaitable[tuple[Any, Any]]:
                return asyncio.open_connection(HOST, port)

            return await timer.measure(function(connect, size, asyncio_gather))

        if contender.backend == "uvloop":
            import uvloop

            result: Measurement = uvloop.run(asyncio_main())
            return result
        return asyncio.run(asyncio_main())

    import portastreams

    from . import _anyio_buffered

    async def anyio_main() -> Measurement:
        def connect() -> Awaitable[tuple[Any, Any]]:
            return portastreams.open_connection(HOST, port)

        return await timer.measure(function(connect, size, _anyio_buffered.gather))

    return _anyio_run(anyio_main, contender.backend)


def _anyio_run(main: Callable[[], Awaitable[Measurement]], backend: str) -> Measurement:
    import anyio

    if backend == "trio":
        return anyio.run(main, backend="trio")
    options = {"use_uvloop": backend == "uvloop"}
    return anyio.run(main, backend="asyncio", backend_options=options)


def _run_anyio_buffered(
    contender: contenders.Contender, workload: str, port: int, size: int, timer: _Timer
) -> Measurement:
    from . import _anyio_buffered

    function = _anyio_buffered.WORKLOADS[workload]

    async def main() -> Measurement:
        return await timer.measure(function(_anyio_buffered.connector(port), size))

    return _anyio_run(main, contender.backend)


def _run_trio_buffer(
    contender: contenders.Contender, workload: str, port: int, size: int, timer: _Timer
) -> Measurement:
    import trio

    from . import _trio_buffer

    function = _trio_buffer.WORKLOADS[workload]

    async def main() -> Measurement:
        return await timer.measure(function(_trio_buffer.connector(port), size))

    return trio.run(main)


RUNNERS = {
    "portastreams": _run_streams_api,
    "asyncio-streams": _run_streams_api,
    "anyio-buffered": _run_anyio_buffered,
    "trio-buffer": _run_trio_buffer,
}


def _max_rss_kib() -> int:
    """The peak RSS of this process image, in KiB.

    ``/proc/self/status`` ``VmHWM`` where there is one: on Linux,
    ``getrusage(RUSAGE_SELF).ru_maxrss`` survives ``execve`` and so starts at
    the peak RSS of the process that spawned us (the runner, ~30 MiB), which
    would hide every contender's own figure. ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client")
    parser.add_argument("workload", choices=workloads.workload_names())
    parser.add_argument("contender", choices=contenders.contender_names())
    parser.add_argument("port", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--profile", default=None, help="write cProfile stats here")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    contender = contenders.get(args.contender)
    try:
        _prepare(args.workload, args.size)
        runner = RUNNERS[contender.library]
        timer = _Timer(args.profile)
        seconds, cpu, detail = runner(
            contender, args.workload, args.port, args.size, timer
        )
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"verified": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    result = {
        "verified": True,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "user_seconds": timer.user_seconds,
        "system_seconds": timer.system_seconds,
        "maxrss_kib": _max_rss_kib(),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "baseline_rss_kib": timer.baseline_rss_kib,
        "detail": detail,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
