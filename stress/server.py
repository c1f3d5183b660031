"""The server process: a stress-protocol server, driven over stdin/stdout.

``python -m stress.server --impl portastreams|asyncio --backend asyncio|uvloop|trio``

``--impl portastreams`` serves with :func:`portastreams.start_server`;
``--impl asyncio`` with the backend's own server, the control: asyncio's
:func:`asyncio.start_server` on asyncio and uvloop, a hand-written
``trio.serve_listeners`` server on trio (:mod:`stress.trio_control`). All run
:meth:`stress.handler.Ledger.handle`.

The control channel is line-based JSON: the orchestrator writes one request
per line on stdin (``{"cmd": "status"}``), the server answers with one line on
stdout (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``). Using the
pipes the process already has means the channel keeps working when the
server is out of file descriptors. Commands:

``serve``
    Start the server (plus a TLS one with ``--certfile``); answers the ports.
``status``
    fds, tasks, rss, rss_peak (since ``reset``), cpu seconds, log counts and
    messages, the handler stats, ``serving`` (``is_serving()``).
``ledger``
    The per-connection entries (see :class:`stress.handler.Entry`).
``reset``
    Forget the ledger, the log counts and the memory peak.
``exhaust_fds`` / ``restore_fds``
    Lower the soft ``RLIMIT_NOFILE`` to the lowest free descriptor (so that
    no new one can be opened: ``accept()`` fails with ``EMFILE``), and back.
``close`` / ``close_clients`` / ``abort_clients``
    Call the server method (on every server of the process).
``wait_closed``
    ``close()`` then ``await wait_closed()`` (argument ``timeout``).
``supports``
    Whether the server has the method ``method`` (asyncio's servers gained
    ``close_clients``/``abort_clients`` in 3.13; uvloop's have neither).
``leak``
    Open a descriptor and start a task that never ends: the instrument's
    self-test (its leak checks must then fail).
``exit``
    Answer, then leave (cancelling whatever still runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

import portastreams

from .handler import Ledger
from .instruments import LogCounter, MemorySampler, cpu_seconds, fd_count, task_count

HOST = "127.0.0.1"

#: ``anyio.run`` arguments per backend name.
BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


class Serving(Protocol):
    """A running server of either implementation."""

    ports: dict[str, int]

    def supports(self, method: str) -> bool: ...

    def is_serving(self) -> bool: ...
    def close(self) -> None: ...
    def close_clients(self) -> None: ...
    def abort_clients(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Options(argparse.Namespace):
    impl: str
    backend: str
    backlog: int
    limit: int
    certfile: str | None
    keyfile: str | None
    handshake_timeout: float


def tls_context(options: Options) -> ssl.SSLContext | None:
    if options.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.certfile, options.keyfile)
    return context


class PortastreamsServing:
    """portastreams servers, each served by ``serve_forever()`` in the task group."""

    def __init__(self, servers: dict[str, portastreams.Server]) -> None:
        self._servers = servers
        self.ports = {
            name: server.sockets[0].getsockname()[1] for name, server in servers.items()
        }

    @classmethod
    async def start(
        cls, options: Options, ledger: Ledger, task_group: TaskGroup
    ) -> PortastreamsServing:
        servers = {
            "port": await portastreams.start_server(
                ledger.handle, HOST, 0, backlog=options.backlog, limit=options.limit
            )
        }
        context = tls_context(options)
        if context is not None:
            servers["tls_port"] = await portastreams.start_server(
                ledger.handle,
                HOST,
                0,
                backlog=options.backlog,
                limit=options.limit,
                ssl=context,
                ssl_handshake_timeout=options.handshake_timeout,
            )
        serving = cls(servers)
        for server in servers.values():
            await task_group.start(server.serve_forever)
        return serving

    def supports(self, method: str) -> bool:
        return True

    def is_serving(self) -> bool:
        return all(server.is_serving() for server in self._servers.values())

    def close(self) -> None:
        for server in self._servers.values():
            server.close()

    def close_clients(self) -> None:
        for server in self._servers.values():
            server.close_clients()

    def abort_clients(self) -> None:
        for server in self._servers.values():
            server.abort_clients()

    async def wait_closed(self) -> None:
        for server in self._servers.values():
            await server.wait_closed()


class AsyncioServing:
    """asyncio's own servers (the control), serving as soon as they are started."""

    def __init__(self, servers: dict[str, asyncio.Server]) -> None:
        self._servers = servers
        self.ports = {
            name: server.sockets[0].getsockname()[1] for name, server in servers.items()
        }

    @classmethod
    async def start(
        cls, options: Options, ledger: Ledger, task_group: TaskGroup
    ) -> AsyncioServing:
        servers = {
            "port": await asyncio.start_server(
                ledger.handle, HOST, 0, backlog=options.backlog, limit=options.limit
            )
        }
        context = tls_context(options)
        if context is not None:
            servers["tls_port"] = await asyncio.start_server(
                ledger.handle,
                HOST,
                0,
                backlog=options.backlog,
                limit=options.limit,
                ssl=context,
                ssl_handshake_timeout=options.handshake_timeout,
            )
        return cls(servers)

    def is_serving(self) -> bool:
        return all(server.is_serving() for server in self._servers.values())

    def close(self) -> None:
        for server in self._servers.values():
            server.close()

    def supports(self, method: str) -> bool:
        return all(hasattr(server, method) for server in self._servers.values())

    def _each_client(self, method: str) -> None:
        for server in self._servers.values():
            getattr(server, method)()  # Python 3.13+

    def close_clients(self) -> None:
        self._each_client("close_clients")

    def abort_clients(self) -> None:
        self._each_client("abort_clients")

    async def wait_closed(self) -> None:
        for server in self._servers.values():
            await server.wait_closed()


class ServerProcess:
    """The process's state, and the commands of the control channel."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.ledger = Ledger()
        self.logs = LogCounter()
        self.logs.install()
        self.memory = MemorySampler()
        self.serving: Serving | None = None
        self.task_group: TaskGroup | None = None
        self.soft_fd_limit, self.hard_fd_limit = resource.getrlimit(
            resource.RLIMIT_NOFILE
        )
        self.done = False
        self.leaked: list[int] = []

    async def serve(self) -> dict[str, Any]:
        assert self.task_group is not None
        start: Callable[..., Any]
        if self.options.impl == "portastreams":
            start = PortastreamsServing.start
        elif self.options.backend == "trio":
            from .trio_control import TrioServing

            start = TrioServing.start
        else:
            start = AsyncioServing.start
        self.serving = await start(self.options, self.ledger, self.task_group)
        return dict(self.serving.ports)

    def status(self) -> dict[str, Any]:
        return {
            "fds": fd_count(),
            "tasks": task_count(self.options.backend),
            "rss": self.memory.rss(),
            "rss_peak": self.memory.peak(),
            "cpu": cpu_seconds(),
            "time": time.monotonic(),
            "logs": self.logs.as_json(),
            "stats": self.ledger.stats.as_json(),
            "serving": self.serving is not None and self.serving.is_serving(),
        }

    def exhaust_fds(self) -> dict[str, Any]:
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, self.hard_fd_limit))
        return {"limit": lowest_free}

    def restore_fds(self) -> dict[str, Any]:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (self.soft_fd_limit, self.hard_fd_limit)
        )
        return {"limit": self.soft_fd_limit}

    def _serving(self) -> Serving:
        if self.serving is None:
            raise RuntimeError("not serving")
        return self.serving

    async def wait_closed(self, timeout: float) -> dict[str, Any]:
        serving = self._serving()
        serving.close()
        started = time.monotonic()
        with anyio.move_on_after(timeout) as scope:
            await serving.wait_closed()
        return {
            "seconds": time.monotonic() - started,
            "timed_out": scope.cancelled_caught,
        }

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "serve":
            return await self.serve()
        if cmd == "status":
            return self.status()
        if cmd == "ledger":
            return {
                "entries": {
                    str(key): entry.as_json()
                    for key, entry in self.ledger.entries.items()
                }
            }
        if cmd == "reset":
            self.ledger.reset()
            self.logs.reset()
            self.memory.reset_peak()
            return {}
        if cmd == "exhaust_fds":
            return self.exhaust_fds()
        if cmd == "restore_fds":
            return self.restore_fds()
        if cmd in ("close", "close_clients", "abort_clients"):
            getattr(self._serving(), cmd)()
            return {}
        if cmd == "wait_closed":
            return await self.wait_closed(float(request.get("timeout", 30.0)))
        if cmd == "supports":
            return {"supports": self._serving().supports(str(request["method"]))}
        if cmd == "leak":
            assert self.task_group is not None
            self.leaked.append(os.open(os.devnull, os.O_RDONLY))
            self.task_group.start_soon(anyio.sleep_forever)
            return {}
        if cmd == "exit":
            self.done = True
            return {}
        raise ValueError(f"unknown command {cmd!r}")

    async def control_loop(self) -> None:
        """Answer requests from stdin until ``exit`` or the end of stdin."""
        os.set_blocking(0, False)
        pending = b""
        while not self.done:
            await anyio.wait_readable(0)
            try:
                data = os.read(0, 65536)
            except BlockingIOError:
                continue
            if not data:
                return
            pending += data
            while b"\n" in pending and not self.done:
                line, pending = pending.split(b"\n", 1)
                try:
                    reply = {"ok": True, **await self.command(json.loads(line))}
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                _write_line(json.dumps(reply))

    async def run(self) -> None:
        async with anyio.create_task_group() as task_group:
            self.task_group = task_group
            _write_line(json.dumps({"ok": True, "pid": os.getpid()}))
            await self.control_loop()
            task_group.cancel_scope.cancel()
        self.memory.stop()
        for fd in self.leaked:
            os.close(fd)


def _write_line(text: str) -> None:
    data = (text + "\n").encode()
    while data:
        written = os.write(1, data)
        data = data[written:]


def parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m stress.server")
    parser.add_argument("--impl", choices=["portastreams", "asyncio"], required=True)
    parser.add_argument("--backend", choices=list(BACKENDS), required=True)
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--limit", type=int, default=2**16)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--handshake-timeout", type=float, default=60.0)
    return parser.parse_args(argv, namespace=Options())


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # room for the load experiment's connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    process = ServerProcess(options)
    backend, backend_options = BACKENDS[options.backend]
    anyio.run(process.run, backend=backend, backend_options=backend_options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
