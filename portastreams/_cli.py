"""The ``portastreams`` command line (also ``python -m portastreams``).

Subcommands:

* ``demo`` -- run the stream demo on every installed backend (see
  :mod:`portastreams._demo`); exit status 1 if anything failed.
* ``echo-server`` -- an echo server to try by hand, e.g. with ``nc``, over TCP
  or a Unix socket.
* ``cat`` -- standard input to a connection and the connection to standard
  output, like netcat (see :mod:`portastreams._cat`).

The benchmarks are not part of the installed package: they live in
``benchmarks/`` of a source checkout and run with ``nox -s bench`` or
``python -m benchmarks`` there. ``bench`` is answered with that hint, and
nothing is imported from the current directory.
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from . import __version__, _cat
from ._demo import demo, show
from ._reader import StreamReader
from ._run import BACKENDS, is_available, not_installed, run
from ._server import Server, start_server, start_unix_server
from ._writer import StreamWriter

__all__ = ["CONSOLE_SCRIPT", "MODULE_COMMAND", "build_parser", "main"]

#: Exit status for "cannot do that here" (also argparse's usage-error status).
EXIT_UNAVAILABLE = 2

#: How the command is called: as the installed script, or with ``python -m``.
CONSOLE_SCRIPT = "portastreams"
MODULE_COMMAND = "python -m portastreams"

#: Where the benchmarks are, for the help text and for ``bench``.
BENCHMARKS_HINT = (
    "The benchmarks are not part of the installed package: in a source "
    "checkout, run them with 'nox -s bench' or 'python -m benchmarks' "
    "(after pip install -e '.[bench]')."
)


def build_parser(prog: str = CONSOLE_SCRIPT) -> argparse.ArgumentParser:
    """The argument parser; ``prog`` is the command shown in usage lines."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="asyncio's stream API on every AnyIO backend: asyncio, uvloop, trio.",
        epilog=BENCHMARKS_HINT,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_parser = commands.add_parser(
        "demo",
        help="run an echo, a line and a framed exchange on every installed backend",
        description="Run an echo, a line protocol and a length-prefixed framed "
        "exchange on each backend and print what crossed the wire.",
    )
    demo_parser.add_argument(
        "--backend",
        action="append",
        choices=list(BACKENDS),
        help="run only on this backend (repeat for several; default: all installed)",
    )

    echo_parser = commands.add_parser(
        "echo-server",
        help="run an echo server (try it with nc HOST PORT)",
        description="Echo every byte back to the client, until Ctrl+C.",
    )
    echo_parser.add_argument("--backend", choices=list(BACKENDS), default="asyncio")
    echo_parser.add_argument("--host", default="127.0.0.1")
    echo_parser.add_argument(
        "--unix", metavar="PATH", help="serve on a Unix socket instead of TCP"
    )
    echo_parser.add_argument(
        "--port", type=int, default=8888, help="0 picks a free port (default: 8888)"
    )

    cat_parser = commands.add_parser(
        "cat",
        help="copy stdin to a connection and the connection to stdout, like netcat",
        description="Copy standard input to a TCP, Unix or TLS connection and the "
        "connection to standard output, until the peer closes.",
    )
    _cat.add_arguments(cat_parser)
    cat_parser.set_defaults(cat_parser=cat_parser)  # for its usage errors
    return parser


def main(argv: Sequence[str] | None = None, prog: str = CONSOLE_SCRIPT) -> int:
    """Run the command line; returns the exit status.

    ``prog`` names the command in usage and error messages: the console
    script passes the default, ``python -m portastreams`` passes
    :data:`MODULE_COMMAND`.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        print(f"{prog}: 'bench' is not a command. {BENCHMARKS_HINT}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    args = build_parser(prog).parse_args(args_list)
    if args.command == "demo":
        return demo(args.backend)
    if args.command == "echo-server":
        return echo_server(args.backend, args.host, args.port, args.unix)
    if args.command == "cat":
        return _cat.main(args, args.cat_parser)
    raise AssertionError(args.command)  # pragma: no cover


def _say(text: str) -> None:
    print(text, flush=True)


def _address(sockname: object) -> str:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = sockname[0], sockname[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(sockname)


async def _handle_echo(reader: StreamReader, writer: StreamWriter) -> None:
    # A Unix socket client has no name (its peername is "").
    peer = _address(writer.get_extra_info("peername")) or "client"
    _say(f"{peer}: connected")
    try:
        while data := await reader.read(65536):
            _say(f"{peer}: echo {show(data)}")
            writer.write(data)
            await writer.drain()
    except OSError as exc:
        _say(f"{peer}: connection lost: {exc!r}")
    else:
        _say(f"{peer}: closed")


async def _serve_echo(backend: str, host: str, port: int, unix: str | None) -> None:
    if unix is not None:
        server = await start_unix_server(_handle_echo, unix)
    else:
        server = await start_server(_handle_echo, host, port)
    addresses = ", ".join(_address(sock.getsockname()) for sock in server.sockets)
    async with server, anyio.create_task_group() as task_group:
        await task_group.start(_close_on_signal, server)
        _say(f"Serving on {addresses} with {backend}; Ctrl+C to stop")
        await server.serve_forever()
        task_group.cancel_scope.cancel()


async def _close_on_signal(
    server: Server, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Close ``server`` on Ctrl+C or SIGTERM, so that it shuts down gracefully.

    A signal receiver rather than ``KeyboardInterrupt``: on Python 3.10 AnyIO's
    asyncio runner reports Ctrl+C as ``CancelledError``.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            server.close()
            return


def echo_server(backend: str, host: str, port: int, unix: str | None = None) -> int:
    """Run an echo server (on the Unix socket ``unix`` if given) until Ctrl+C."""
    if not is_available(backend):
        print(not_installed(backend), file=sys.stderr)
        return EXIT_UNAVAILABLE
    run(functools.partial(_serve_echo, backend, host, port, unix), backend)
    _say("stopped")
    return 0
