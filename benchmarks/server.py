"""One server contender in this (fresh) process, for the load generators.

``python -m benchmarks.server PROTOCOL CONTENDER [--cpu N]`` listens on an
ephemeral loopback port with the ``resp`` or ``http`` handler (see
:mod:`.protocols`), prints ``PORT <n>`` and serves until its stdin closes.
Only the modules the contender needs are imported (asyncio contenders do not
import trio or portastreams), so its memory figures are its own.

The harness talks to the process over stdin: each line ``STATS`` is answered
on stdout with one JSON object -- the request counts by kind, the process's
user and system CPU seconds (``getrusage``) and its resident set size
(``VmRSS``) -- so it can take CPU per request and memory per connection
without a timer in the serving loop. A control thread does this; it sleeps
in ``read()`` while the load runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

from . import contenders
from .protocols import COUNTS

HOST: Final = "127.0.0.1"
#: Listen backlog of every contender: large enough that the load generators'
#: connection bursts (100 at once) and the idle-connection probe never
#: overflow it, whatever the contender's default.
BACKLOG: Final = 1024
PROTOCOLS: Final = ("resp", "http")

_output_lock = threading.Lock()


def _say(line: str) -> None:
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def rss_kib() -> int:
    """The resident set size of this process now (``VmRSS``), in KiB; 0 if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def stats() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "counts": {kind: COUNTS[kind] for kind in COUNTS},
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        "rss_kib": rss_kib(),
    }


def _control() -> None:
    """Answer ``STATS`` lines from stdin; exit the process when stdin closes."""
    for line in sys.stdin:
        if line.strip() == "STATS":
            _say(json.dumps(stats()))
    os._exit(0)


def _announce(port: int) -> None:
    threading.Thread(target=_control, daemon=True).start()
    _say(f"PORT {port}")


def _serve_asyncio(protocol: str, backend: str) -> None:
    import asyncio

    from ._serve_streams_api import HANDLERS

    handler = HANDLERS[protocol]

    async def main() -> None:
        server = await asyncio.start_server(handler, HOST, 0, backlog=BACKLOG)
        _announce(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    if backend == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _serve_portastreams(protocol: str, backend: str) -> None:
    import anyio

    import portastreams

    from ._serve_streams_api import HANDLERS

    handler = HANDLERS[protocol]

    async def main() -> None:
        server = await portastreams.start_server(handler, HOST, 0, backlog=BACKLOG)
        _announce(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    if backend == "trio":
        anyio.run(main, backend="trio")
    else:
        options = {"use_uvloop": backend == "uvloop"}
        anyio.run(main, backend="asyncio", backend_options=options)


def _serve_trio_buffer(protocol: str, backend: str) -> None:
    import trio

    from ._serve_trio_buffer import HANDLERS

    handler = HANDLERS[protocol]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                trio.serve_tcp, handler, 0, host=HOST, backlog=BACKLOG
            )
            listeners = await nursery.start(serve)
            _announce(listeners[0].socket.getsockname()[1])

    trio.run(main)


RUNNERS: dict[str, Callable[[str, str], None]] = {
    "asyncio-streams": _serve_asyncio,
    "portastreams": _serve_portastreams,
    "trio-buffer": _serve_trio_buffer,
}


def raise_file_limit() -> None:
    """Allow as many open files as the hard limit (the idle-connection probe)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("protocol", choices=PROTOCOLS)
    parser.add_argument("contender", choices=contenders.server_contender_names())
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_file_limit()
    contender = contenders.get_server(args.contender)
    run: Callable[[str, str], None] = RUNNERS[contender.library]
    run(args.protocol, contender.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
