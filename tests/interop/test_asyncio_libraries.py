"""Real asyncio client libraries, unchanged, on portastreams' streams.

redis-py (``redis.asyncio``) and nats-py look up ``asyncio.open_connection``
and ``asyncio.open_unix_connection`` when they connect. Here those two names
are replaced by portastreams' functions, and each library runs against the
real server: pipelines, large values, pub/sub, a blocking call cancelled, the
server killing the connection (or dying) and the library reconnecting.

They are asyncio libraries, so they run on asyncio and uvloop. Every test
checks that the library's connections really were portastreams'.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from backends import ASYNCIO_BACKENDS
from nats_server import NatsServer, running_nats
from programs import require_module
from redis_server import RedisServer, running_redis
from sockets import Kind

import portastreams

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS),
]

DEADLINE = 60
MiB = 2**20


@dataclass
class Replaced:
    """Counts the connections made through the replaced asyncio functions."""

    connections: list[tuple[portastreams.StreamReader, portastreams.StreamWriter]] = (
        field(default_factory=list)
    )


@pytest.fixture
def on_portastreams(monkeypatch: pytest.MonkeyPatch) -> Replaced:
    """``asyncio.open_connection``/``open_unix_connection`` replaced by portastreams'."""
    return replace_asyncio_functions(monkeypatch)


def replace_asyncio_functions(monkeypatch: pytest.MonkeyPatch) -> Replaced:
    """Replace the two asyncio functions for the rest of the test."""
    replaced = Replaced()

    async def open_connection(
        *args: Any, **kwargs: Any
    ) -> tuple[portastreams.StreamReader, portastreams.StreamWriter]:
        pair = await portastreams.open_connection(*args, **kwargs)
        replaced.connections.append(pair)
        return pair

    async def open_unix_connection(
        *args: Any, **kwargs: Any
    ) -> tuple[portastreams.StreamReader, portastreams.StreamWriter]:
        pair = await portastreams.open_unix_connection(*args, **kwargs)
        replaced.connections.append(pair)
        return pair

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    monkeypatch.setattr(asyncio, "open_unix_connection", open_unix_connection)
    return replaced


def binary_value(size: int) -> bytes:
    value = bytearray(os.urandom(size))
    if size >= 4:
        value[:2] = value[-2:] = b"\r\n"
    return bytes(value)


# -- redis-py ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_process() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_server(redis_process: RedisServer) -> RedisServer:
    subprocess.run(
        [redis_process.cli_path, "-p", str(redis_process.port), "FLUSHALL"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return redis_process


@pytest.fixture
async def redis_client(
    redis_server: RedisServer, kind: Kind, on_portastreams: Replaced
) -> AsyncIterator[Any]:
    """A ``redis.asyncio.Redis`` over TCP or the Unix socket, on portastreams."""
    redis_asyncio = require_module("redis.asyncio")
    if kind == "unix":
        client = redis_asyncio.Redis(unix_socket_path=redis_server.unix_path)
    else:
        client = redis_asyncio.Redis(host=redis_server.host, port=redis_server.port)
    try:
        yield client
    finally:
        await client.aclose()
    assert on_portastreams.connections, "redis-py did not connect through portastreams"


async def test_redis_py_large_values(
    redis_client: Any, redis_server: RedisServer
) -> None:
    with anyio.fail_after(DEADLINE):
        for size in (0, 1, 65536 + 1, MiB, 5 * MiB):
            value = binary_value(size)
            assert await redis_client.set(f"value:{size}", value) is True
            assert await redis_client.get(f"value:{size}") == value
            assert await redis_client.strlen(f"value:{size}") == size
        # The reference client reads the same bytes.
        assert (
            await redis_server.cli("GET", "value:1")
            == (await redis_client.get("value:1")) + b"\n"
        )


async def test_redis_py_pipeline_of_10000_commands(redis_client: Any) -> None:
    with anyio.fail_after(DEADLINE):
        async with redis_client.pipeline(transaction=False) as pipe:
            for i in range(5000):
                pipe.set(f"key:{i}", b"%d\r\n" % i)
                pipe.get(f"key:{i}")
            replies = await pipe.execute()
        assert replies == [
            reply for i in range(5000) for reply in (True, b"%d\r\n" % i)
        ]
        async with redis_client.pipeline(transaction=True) as pipe:
            pipe.incr("counter").incr("counter").get("counter")
            assert await pipe.execute() == [1, 2, b"2"]


async def test_redis_py_pubsub(redis_client: Any) -> None:
    sent = [b"first", binary_value(100_000), b"", b"last"]
    with anyio.fail_after(DEADLINE):
        async with redis_client.pubsub() as pubsub:
            await pubsub.subscribe("news", "other")
            for data in sent:
                assert await redis_client.publish("news", data) == 1
            received: list[dict[str, Any]] = []
            while len(received) < len(sent):
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=10
                )
                if message is not None:
                    received.append(message)
            assert [m["data"] for m in received] == sent
            assert {m["channel"] for m in received} == {b"news"}
            # A poll that times out loses nothing.
            assert await pubsub.get_message(timeout=0.1) is None
            await redis_client.publish("other", "after the poll")
            message = await pubsub.get_message(timeout=10)
            assert message is not None
            assert message["data"] == b"after the poll"


async def blocked_clients(redis_server: RedisServer) -> int:
    info = (await redis_server.cli("INFO", "clients")).decode()
    for line in info.splitlines():
        if line.startswith("blocked_clients:"):
            return int(line.split(":")[1])
    raise AssertionError(info)


async def wait_for_blocked_clients(redis_server: RedisServer, count: int) -> None:
    while await blocked_clients(redis_server) != count:
        await anyio.sleep(0.02)


@pytest.mark.parametrize("how", ["anyio", "asyncio"])
async def test_redis_py_cancel_a_blocking_call(
    redis_client: Any, redis_server: RedisServer, how: str
) -> None:
    with anyio.fail_after(DEADLINE):
        if how == "anyio":
            with anyio.move_on_after(0.2) as scope:
                await redis_client.blpop("queue", timeout=0)
            assert scope.cancelled_caught
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(redis_client.blpop("queue", timeout=0), 0.2)
        # redis-py drops a connection whose command was cancelled: the server
        # stops blocking on it, and nothing pushed later is lost to it.
        await wait_for_blocked_clients(redis_server, 0)
        await redis_client.lpush("queue", "after")
        assert list(await redis_client.blpop("queue", timeout=5)) == [
            b"queue",
            b"after",
        ]
        assert await redis_client.ping() is True


async def test_redis_py_reconnects_after_client_kill(
    redis_client: Any, redis_server: RedisServer, on_portastreams: Replaced
) -> None:
    with anyio.fail_after(DEADLINE):
        # An idle pooled connection killed by the server: the next command
        # notices (the reader saw the EOF) and reconnects.
        first_id = await redis_client.client_id()
        assert await redis_server.cli("CLIENT", "KILL", "ID", str(first_id)) == b"1\n"
        await anyio.sleep(0.1)
        assert await redis_client.set("after-kill", "yes") is True
        assert await redis_client.client_id() != first_id

        # A connection killed while its command blocks: redis-py retries the
        # command on a new connection, which then gets the value.
        async with anyio.create_task_group() as task_group:
            results: list[object] = []

            async def pop() -> None:
                results.append(list(await redis_client.blpop("jobs", timeout=0)))

            task_group.start_soon(pop)
            await wait_for_blocked_clients(redis_server, 1)
            blocked_id = (
                await redis_server.cli("CLIENT", "LIST", "TYPE", "normal")
            ).decode()
            ids = [
                line.split()[0].removeprefix("id=")
                for line in blocked_id.splitlines()
                if "cmd=blpop" in line
            ]
            assert len(ids) == 1
            await redis_server.cli("CLIENT", "KILL", "ID", ids[0])
            await wait_for_blocked_clients(redis_server, 1)  # blocked again
            await redis_server.cli("LPUSH", "jobs", "job-1")
        assert results == [[b"jobs", b"job-1"]]
        assert len(on_portastreams.connections) >= 3


@pytest.fixture(scope="module")
def redis_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, Path]]:
    """A server that also listens for TLS; and the file of the CA that signed it."""
    directory = tmp_path_factory.mktemp("redis-tls")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    chain, key, ca = (
        directory / "chain.pem",
        directory / "key.pem",
        directory / "ca.pem",
    )
    chain.write_bytes(b"".join(pem.bytes() for pem in certificate.cert_chain_pems))
    certificate.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    with running_redis(tls=(chain, key)) as server:
        yield server, ca


async def test_redis_py_over_tls(
    redis_tls: tuple[RedisServer, Path], on_portastreams: Replaced
) -> None:
    server, ca = redis_tls
    redis_asyncio = require_module("redis.asyncio")
    client = redis_asyncio.Redis(
        host="127.0.0.1", port=server.tls_port, ssl=True, ssl_ca_certs=str(ca)
    )
    with anyio.fail_after(DEADLINE):
        await server.cli("DEL", "tls:counter")
        try:
            value = binary_value(3 * MiB)
            assert await client.set("tls:value", value) is True
            assert await client.get("tls:value") == value
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(10_000):
                    pipe.incr("tls:counter")
                assert await pipe.execute() == list(range(1, 10_001))
        finally:
            await client.aclose()
    ((_, writer),) = on_portastreams.connections
    assert writer.get_extra_info("ssl_object") is not None
    assert await server.cli("GET", "tls:counter") == b"10000\n"


@pytest.mark.parametrize("transport", ["tcp", "unix", "tls"])
async def test_redis_py_notices_an_idle_connection_killed_as_with_asyncio(
    redis_tls: tuple[RedisServer, Path],
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    # Without retries, a command on a pooled connection the server has
    # closed succeeds only if the pool sees, before using it, that it was
    # closed: redis-py looks at the reader's at_eof() and its private _buffer.
    # asyncio's streams read eagerly, so they know; the same must hold here.
    server, ca = redis_tls
    redis_asyncio = require_module("redis.asyncio")
    retry = require_module("redis.asyncio.retry").Retry
    no_backoff = require_module("redis.backoff").NoBackoff

    def make_client() -> Any:
        options: dict[str, Any] = {"retry": retry(no_backoff(), 0)}
        if transport == "unix":
            return redis_asyncio.Redis(unix_socket_path=server.unix_path, **options)
        if transport == "tls":
            options |= {"ssl": True, "ssl_ca_certs": str(ca), "port": server.tls_port}
            return redis_asyncio.Redis(host="127.0.0.1", **options)
        return redis_asyncio.Redis(host="127.0.0.1", port=server.port, **options)

    async def ping_after_idle_kill() -> object:
        client = make_client()
        try:
            client_id = await client.client_id()
            assert await server.cli("CLIENT", "KILL", "ID", str(client_id)) == b"1\n"
            await anyio.sleep(0.2)
            try:
                return await client.ping()
            except Exception as exc:
                return type(exc).__name__
        finally:
            await client.aclose()

    with anyio.fail_after(DEADLINE):
        expected = await ping_after_idle_kill()  # asyncio's own streams
        replaced = replace_asyncio_functions(monkeypatch)
        assert await ping_after_idle_kill() == expected
    assert expected in (True, "ConnectionError")
    # With a reconnection, the killed connection and its successor.
    assert len(replaced.connections) == (2 if expected is True else 1)


# -- nats-py ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    with running_nats() as server:
        yield server


@pytest.fixture
def nats_module(on_portastreams: Replaced) -> Any:
    return require_module("nats")


async def test_nats_py_pub_sub(
    nats_module: Any, nats_server: NatsServer, on_portastreams: Replaced
) -> None:
    sizes = [0, 1, 65536 + 1, 512 * 1024, MiB]
    with anyio.fail_after(DEADLINE):
        nc = await nats_module.connect(nats_server.url)
        try:
            subscription = await nc.subscribe("data.>")
            payloads = [binary_value(size) for size in sizes]
            for size, payload in zip(sizes, payloads, strict=True):
                await nc.publish(f"data.{size}", payload)
            for i in range(10_000):
                await nc.publish("data.numbers", b"%d" % i)
            await nc.flush()
            for size, payload in zip(sizes, payloads, strict=True):
                msg = await subscription.next_msg(timeout=10)
                assert (msg.subject, msg.data) == (f"data.{size}", payload)
            for i in range(10_000):
                assert (await subscription.next_msg(timeout=10)).data == b"%d" % i
        finally:
            await nc.close()
    assert len(on_portastreams.connections) == 1


async def test_nats_py_request_reply_and_cancellation(
    nats_module: Any, nats_server: NatsServer, on_portastreams: Replaced
) -> None:
    with anyio.fail_after(DEADLINE):
        nc = await nats_module.connect(nats_server.url)
        try:

            async def reverse(msg: Any) -> None:
                await msg.respond(msg.data[::-1])

            await nc.subscribe("reverse", cb=reverse)
            await nc.flush()
            answer = await nc.request("reverse", b"stressed", timeout=10)
            assert answer.data == b"desserts"

            # A request nobody answers, cancelled from outside...
            silent = await nc.subscribe("silent")
            with anyio.move_on_after(0.2) as scope:
                await nc.request("silent", b"anyone?", timeout=30)
            assert scope.cancelled_caught
            assert (await silent.next_msg(timeout=10)).data == b"anyone?"
            # ...and a wait for a message, by its own timeout.
            with pytest.raises(nats_module.errors.TimeoutError):
                await silent.next_msg(timeout=0.2)
            # The connection carries on.
            answer = await nc.request("reverse", b"live", timeout=10)
            assert answer.data == b"evil"
        finally:
            await nc.close()
    assert len(on_portastreams.connections) == 1


async def test_nats_py_reconnects_after_the_server_dies(
    nats_module: Any, on_portastreams: Replaced
) -> None:
    disconnected, reconnected = anyio.Event(), anyio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    with anyio.fail_after(DEADLINE):
        with running_nats() as first:
            nc = await nats_module.connect(
                first.url,
                reconnect_time_wait=0.1,
                max_reconnect_attempts=-1,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
            subscription = await nc.subscribe("survives")
            await nc.publish("survives", b"before")
            assert (await subscription.next_msg(timeout=10)).data == b"before"
            port = first.port
            first.process.kill()
            await disconnected.wait()
        try:
            with running_nats(port=port):
                await reconnected.wait()
                # The subscription was replayed on the new connection.
                await nc.publish("survives", b"after")
                assert (await subscription.next_msg(timeout=10)).data == b"after"
        finally:
            await nc.close()
    assert len(on_portastreams.connections) >= 2


@pytest.fixture(scope="module")
def nats_tls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NatsServer, ssl.SSLContext]]:
    authority = trustme.CA()
    directory = tmp_path_factory.mktemp("nats-tls")
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    args = ["--tls", "--tlscert", str(cert_file), "--tlskey", str(key_file)]
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    with running_nats(args=args) as server:
        yield server, client_context


async def test_nats_py_tls(
    nats_module: Any,
    nats_tls: tuple[NatsServer, ssl.SSLContext],
    on_portastreams: Replaced,
) -> None:
    # nats-py upgrades the plain connection after the server's INFO with
    # loop.start_tls(writer.transport, ...): on asyncio and uvloop,
    # portastreams' plain connections are on the loop's own transports.
    server, context = nats_tls
    with anyio.fail_after(DEADLINE):
        nc = await nats_module.connect(f"tls://127.0.0.1:{server.port}", tls=context)
        try:
            subscription = await nc.subscribe("secret")
            payload = binary_value(300_000)
            await nc.publish("secret", payload)
            assert (await subscription.next_msg(timeout=10)).data == payload
            # The server agrees that the connection is encrypted.
            connz = await anyio.to_thread.run_sync(server.monitor, "connz")
            (connection,) = connz["connections"]
            assert connection["tls_version"].startswith("1.")
        finally:
            await nc.close()
    assert len(on_portastreams.connections) == 1
