"""``python -m portastreams cat``: standard input to a connection, the connection
to standard output -- a netcat on portastreams' streams.

Usage::

    python -m portastreams cat [--backend trio] [--tls [--cafile ca.pem]
        [--server-hostname NAME]] (HOST PORT | --unix PATH)

The contract:

* Both directions run at once, each with flow control: a slow peer slows the
  reading of standard input, a slow standard output the reading of the
  connection.
* When standard input ends, the tool ends its sending side (``write_eof()``:
  the peer reads an end of stream) and carries on copying what the peer sends.
  TLS has no such half-close (``can_write_eof()`` is false, as in asyncio), so
  over TLS it just carries on reading.
* When the peer closes, the tool exits, whether or not standard input has
  ended: exit status 0.
* ``--tls`` verifies the server's certificate against the system's
  certificate authorities, or only those of ``--cafile``, and its name: HOST,
  or ``--server-hostname`` (which ``--unix`` needs).
* A connection error prints one line on standard error: exit status 1.
  Ctrl+C (or SIGTERM) stops it: exit status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import ssl
import stat
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import anyio
from anyio.abc import TaskStatus

from ._connections import open_connection, open_unix_connection
from ._reader import StreamReader
from ._run import BACKENDS, is_available, run
from ._writer import StreamWriter

__all__ = ["Target", "add_arguments", "cat", "main"]

#: The most bytes one read takes, from standard input or from the connection.
CHUNK_SIZE: Final = 65536
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
#: Usage errors, and a backend that is not installed (argparse's status).
EXIT_USAGE: Final = 2
#: Stopped by Ctrl+C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130
PROGRAM: Final = "python -m portastreams cat"


@dataclass(frozen=True)
class Target:
    """Where to connect, and how."""

    host: str | None = None
    port: int | None = None
    unix_path: str | None = None
    tls: bool = False
    cafile: str | None = None
    server_hostname: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context, trusting ``cafile`` only if it is set."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.cafile)

    async def connect(self) -> tuple[StreamReader, StreamWriter]:
        context = self.ssl_context()
        if self.unix_path is not None:
            return await open_unix_connection(
                self.unix_path, ssl=context, server_hostname=self.server_hostname
            )
        return await open_connection(
            self.host, self.port, ssl=context, server_hostname=self.server_hostname
        )


class InputReader:
    """Reads a file descriptor without blocking the event loop.

    It waits until the descriptor is readable, then reads what is there.
    Regular files, and whatever the event loop cannot watch (``/dev/null``,
    for one), are read directly: reading them never waits long.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._watchable = not stat.S_ISREG(os.fstat(fd).st_mode)

    async def read(self, size: int) -> bytes:
        if self._watchable:
            try:
                await anyio.wait_readable(self.fd)
            except PermissionError:  # epoll refuses this kind of file
                self._watchable = False
        return os.read(self.fd, size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def write_output(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` in a worker thread: a full pipe waits
    there, not in the event loop."""
    await anyio.to_thread.run_sync(_write_all, fd, data)


class Copy:
    """Both directions of one connection; the first failure ends both."""

    def __init__(
        self,
        reader: StreamReader,
        writer: StreamWriter,
        source: InputReader,
        output_fd: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.source = source
        self.output_fd = output_fd
        self.error: OSError | None = None

    async def run(self) -> None:
        """Until the peer closes (or a failure, kept in :attr:`error`)."""
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._guarded, self.upload, task_group.cancel_scope)
            await self._guarded(self.download, task_group.cancel_scope)
            task_group.cancel_scope.cancel()  # the peer closed: stop reading input

    async def _guarded(
        self, direction: Callable[[], Awaitable[None]], scope: anyio.CancelScope
    ) -> None:
        try:
            await direction()
        except OSError as exc:
            if self.error is None:
                self.error = exc
            scope.cancel()

    async def upload(self) -> None:
        """Standard input to the connection, then the end of stream if possible."""
        while data := await self.source.read(CHUNK_SIZE):
            self.writer.write(data)
            await self.writer.drain()
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def download(self) -> None:
        """The connection to standard output, until the peer closes."""
        while data := await self.reader.read(CHUNK_SIZE):
            await write_output(self.output_fd, data)


async def cat(target: Target, input_fd: int, output_fd: int) -> int:
    """Connect to ``target`` and copy both ways; return the exit status.

    Errors are reported on standard error. Ctrl+C and SIGTERM stop it.
    """
    interrupted = False
    status = EXIT_OK
    async with anyio.create_task_group() as task_group:

        async def stop_on_signal(*, task_status: TaskStatus[None]) -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    interrupted = True
                    task_group.cancel_scope.cancel()
                    return

        await task_group.start(stop_on_signal)
        status = await _session(target, input_fd, output_fd)
        task_group.cancel_scope.cancel()
    return EXIT_INTERRUPTED if interrupted else status


async def _session(target: Target, input_fd: int, output_fd: int) -> int:
    try:
        reader, writer = await target.connect()
    except OSError as exc:
        return _fail(exc)
    copy = Copy(reader, writer, InputReader(input_fd), output_fd)
    try:
        await copy.run()
    except anyio.get_cancelled_exc_class():
        # Ctrl+C: stop now, without waiting for a peer that may not be reading.
        writer.transport.abort()
        raise
    writer.close()
    with contextlib.suppress(OSError):  # it would repeat copy.error
        await writer.wait_closed()
    return EXIT_OK if copy.error is None else _fail(copy.error)


def _fail(exc: OSError) -> int:
    print(f"{PROGRAM}: {exc}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``cat`` subcommand's arguments."""
    parser.add_argument("--backend", choices=list(BACKENDS), default="asyncio")
    parser.add_argument("host", metavar="HOST", nargs="?", help="host to connect to")
    parser.add_argument("port", metavar="PORT", nargs="?", type=int, help="its port")
    parser.add_argument(
        "--unix", metavar="PATH", help="connect to a Unix socket instead"
    )
    parser.add_argument("--tls", action="store_true", help="TLS, with verification")
    parser.add_argument(
        "--cafile", help="with --tls: trust only the authorities in this PEM file"
    )
    parser.add_argument(
        "--server-hostname",
        metavar="NAME",
        help="with --tls: the name to verify (default: HOST; required with --unix)",
    )


def target_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Target:
    """Check the arguments' combination (``parser.error`` exits if wrong)."""
    if args.unix is not None:
        if args.host is not None:
            parser.error("give either HOST PORT or --unix PATH, not both")
        if args.tls and not args.server_hostname:
            parser.error("--tls with --unix needs --server-hostname")
    elif args.host is None or args.port is None:
        parser.error("give HOST PORT, or --unix PATH")
    if not args.tls and (args.cafile or args.server_hostname):
        parser.error("--cafile and --server-hostname only go with --tls")
    return Target(
        host=args.host,
        port=args.port,
        unix_path=args.unix,
        tls=args.tls,
        cafile=args.cafile,
        server_hostname=args.server_hostname,
    )


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``cat`` with parsed arguments; returns the exit status."""
    target = target_from(args, parser)
    if not is_available(args.backend):
        print(f"{PROGRAM}: backend {args.backend!r} is not installed", file=sys.stderr)
        return EXIT_USAGE
    if target.cafile is not None and not os.path.exists(target.cafile):
        print(f"{PROGRAM}: no such file: {target.cafile}", file=sys.stderr)
        return EXIT_USAGE
    return run(
        functools.partial(cat, target, sys.stdin.fileno(), sys.stdout.fileno()),
        args.backend,
    )
