"""TLS ``write(); close()`` delivers every byte, then ``close_notify``.

Seeded runs of mixed sizes -- small and multi-MiB writes, two tasks writing
at once, with and without ``wait_closed()``, a peer that reads slowly -- on
both ends of a connection (a portastreams TLS server writing to a client,
and a portastreams TLS client writing to a server). The peer is the standard
library's blocking ``ssl`` socket with ragged EOFs *not* suppressed, so a
close without ``close_notify`` (or a reset) fails the run.

``PORTASTREAMS_TLS_CLOSE_RUNS`` sets the number of seeded runs per backend
and direction (CI: the default; ``nox -s stress`` runs 1,000).
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable

import anyio
import pytest
from certificates import client_context, server_context

import portastreams
from portastreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio

RUNS = int(os.environ.get("PORTASTREAMS_TLS_CLOSE_RUNS", "40"))


def plan(seed: int) -> tuple[list[list[int]], bool, float]:
    """For a seed: the write sizes of each writing task, wait_closed?, read delay."""
    rng = random.Random(seed)
    tasks = rng.choice([1, 1, 2])
    sizes = [
        [
            rng.choice([0, 1, 100, 16_383, 16_384, 65_536, 300_000, 4 * 1024 * 1024])
            for _ in range(rng.randint(1, 6))
        ]
        for _ in range(tasks)
    ]
    return sizes, rng.random() < 0.5, rng.choice([0.0, 0.0, 0.002])


def records(task: int, sizes: list[int]) -> list[bytes]:
    """Self-describing records: a torn or reordered one is detected."""
    out = []
    for index, size in enumerate(sizes):
        body = bytes([65 + (index + task) % 26]) * size
        header = f"{task}:{index}:{size}:".encode()
        out.append(header + body + b";")
    return out


def expected_digest(sizes: list[list[int]]) -> dict[int, list[bytes]]:
    return {task: records(task, task_sizes) for task, task_sizes in enumerate(sizes)}


def parse(data: bytes) -> dict[int, list[bytes]]:
    """Split a received stream back into each task's records, in order."""
    out: dict[int, list[bytes]] = {}
    position = 0
    while position < len(data):
        colon1 = data.index(b":", position)
        colon2 = data.index(b":", colon1 + 1)
        colon3 = data.index(b":", colon2 + 1)
        task = int(data[position:colon1])
        size = int(data[colon2 + 1 : colon3])
        end = colon3 + 1 + size + 1
        out.setdefault(task, []).append(data[position:end])
        position = end
    return out


async def write_and_close(writer: StreamWriter, seed: int) -> None:
    sizes, wait, _delay = plan(seed)

    async def write_records(task: int) -> None:
        for record in records(task, sizes[task]):
            writer.write(record)  # no drain(): that is the point
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for task in range(len(sizes)):
            group.start_soon(write_records, task)
    writer.close()
    if wait:
        await writer.wait_closed()


def read_until_close_notify(tls: ssl.SSLSocket, delay: float) -> bytes:
    """Read until the peer's close_notify; a ragged EOF or reset raises."""
    chunks: list[bytes] = []
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if delay:
            time.sleep(delay)


def check(received: bytes, seed: int) -> None:
    sizes, _wait, _delay = plan(seed)
    got = parse(received)
    want = expected_digest(sizes)
    assert {k: v for k, v in got.items() if v} == {
        k: v for k, v in want.items() if v
    }, (
        f"seed {seed}: {len(received)} bytes, "
        f"sha1 {hashlib.sha1(received).hexdigest()[:12]}"
    )


def run_in_thread(target: Callable[[], bytes]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(target())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


async def test_server_write_close_delivers_everything() -> None:
    """The server writes and closes; a stdlib client checks every byte + close_notify."""
    seeds = iter(range(RUNS))
    current: list[int] = []

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        await write_and_close(writer, current[-1])

    server = await portastreams.start_server(
        handler, "127.0.0.1", 0, ssl=server_context()
    )
    port = server.sockets[0].getsockname()[1]
    async with server:
        for seed in seeds:
            current.append(seed)
            _sizes, _wait, delay = plan(seed)

            def client(delay: float = delay) -> bytes:
                raw = socket.create_connection(("127.0.0.1", port), timeout=30)
                tls = client_context().wrap_socket(
                    raw, server_hostname="localhost", suppress_ragged_eofs=False
                )
                with tls:
                    return read_until_close_notify(tls, delay)

            with anyio.fail_after(60):
                received = await anyio.to_thread.run_sync(client)
            check(received, seed)


async def test_client_write_close_delivers_everything() -> None:
    """A portastreams client writes and closes; a stdlib server checks it all."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = listener.getsockname()[1]
    try:
        for seed in range(RUNS):
            _sizes, _wait, delay = plan(seed)

            def server(delay: float = delay) -> bytes:
                conn, _ = listener.accept()
                conn.settimeout(30)
                tls = server_context().wrap_socket(
                    conn, server_side=True, suppress_ragged_eofs=False
                )
                with tls:
                    return read_until_close_notify(tls, delay)

            thread, result = run_in_thread(server)
            with anyio.fail_after(60):
                _reader, writer = await portastreams.open_connection(
                    "127.0.0.1", port, ssl=client_context(), server_hostname="localhost"
                )
                await write_and_close(writer, seed)
                await writer.wait_closed()
                await anyio.to_thread.run_sync(thread.join, 30)
            assert result, f"seed {seed}: the server thread did not finish"
            if isinstance(result[0], BaseException):
                raise AssertionError(f"seed {seed}: {result[0]!r}") from result[0]
            assert isinstance(result[0], bytes)
            check(result[0], seed)
    finally:
        listener.close()
