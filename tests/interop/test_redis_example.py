"""examples/redis_client.py as a program, against a real redis-server, on every backend.

And the one rule of its client that a real server cannot be made to
exercise on cue: a read interrupted in the middle of a reply closes the
connection.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from backends import BACKENDS
from redis_server import RedisServer, running_redis
from subprocesses import BACKEND_NAMES, EXAMPLES, describe, run_python

import portastreams

sys.path.insert(0, str(EXAMPLES))  # the examples are scripts, not a package
from redis_client import RedisClient

SCRIPT = str(EXAMPLES / "redis_client.py")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def cli(server: RedisServer, *args: str) -> bytes:
    """``redis-cli``, the reference client: its raw output."""
    return subprocess.run(
        [server.cli_path, "-p", str(server.port), *args],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_tour(redis: RedisServer, backend: str, kind: str) -> None:
    where = (
        ["--unix", redis.unix_path] if kind == "unix" else ["--port", str(redis.port)]
    )
    result = run_python([SCRIPT, "--backend", backend, *where])
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == [
        "PING: 'PONG'",
        "SET/GET: 3145728 random bytes, the same",
        "pipeline: 10000 INCR, replies 1 to 10000",
        "error reply: WRONGTYPE",
        "pub/sub: 1 receiver, got b'hello\\r\\nworld'",
    ]
    assert result.stderr == ""
    # The tour cleans up after itself.
    assert cli(redis, "KEYS", "portastreams-tour:*").strip() == b""


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_one_command_at_a_time(redis: RedisServer, backend: str) -> None:
    def run(*command: str) -> str:
        result = run_python(
            [SCRIPT, "--backend", backend, "--port", str(redis.port), *command]
        )
        assert result.returncode == 0, describe(result)
        assert result.stderr == ""
        return result.stdout

    key = f"example:{backend}"
    assert run("SET", key, "héllo wörld") == "'OK'\n"
    # What redis-cli reads is what the example wrote, UTF-8 and all...
    assert cli(redis, "GET", key) == "héllo wörld\n".encode()
    # ...and the other way round.
    cli(redis, "SET", key, "from redis-cli")
    assert run("GET", key) == "b'from redis-cli'\n"
    assert run("STRLEN", key) == "14\n"
    assert run("GET", "no-such-key") == "None\n"
    assert run("DEL", key) == "1\n"


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_error_reply_exit_status(redis: RedisServer, backend: str) -> None:
    result = run_python(
        [SCRIPT, "--backend", backend, "--port", str(redis.port), "NO-SUCH-COMMAND"]
    )
    assert result.returncode == 1, describe(result)
    assert result.stdout == ""
    assert result.stderr.startswith("(error) ERR unknown command 'NO-SUCH-COMMAND'")


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_connection_refused(backend: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-server.sock")
    result = run_python([SCRIPT, "--backend", backend, "--unix", missing, "PING"])
    assert result.returncode != 0
    assert "FileNotFoundError" in result.stderr, describe(result)


# -- a reply cut short by a timeout ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", BACKENDS)
async def test_timeout_in_the_middle_of_a_reply_closes_the_connection() -> None:
    # A server that sends the head of a bulk string and then stalls: a timeout
    # there leaves the client out of step, so it must close the connection
    # rather than read the rest as the next reply.
    # One event per connection, set when the server may send the rest.
    release = [anyio.Event(), anyio.Event()]
    connections = 0

    async def half_a_reply(
        reader: portastreams.StreamReader, writer: portastreams.StreamWriter
    ) -> None:
        nonlocal connections
        stalled = release[connections]
        connections += 1
        await reader.readline()
        writer.write(b"$10\r\nhello")
        await stalled.wait()
        writer.write(b"world\r\n+PONG\r\n")

    with anyio.fail_after(30):
        server = await portastreams.start_server(half_a_reply, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = await RedisClient.connect("127.0.0.1", port)
            client.send("GET", "key")
            with anyio.move_on_after(0.2) as scope:
                await client.read_reply()
            assert scope.cancelled_caught
            assert client.broken
            assert client.writer.is_closing()
            with pytest.raises(ConnectionError, match="cut short"):
                await client.execute("PING")
            release[0].set()
            await client.close()

            # A timeout before any of the reply arrived costs nothing.
            client = await RedisClient.connect("127.0.0.1", port)
            with anyio.move_on_after(0.2) as scope:
                await client.read_reply()  # nothing was asked: nothing comes
            assert scope.cancelled_caught
            assert not client.broken
            client.send("GET", "key")
            release[1].set()
            assert await client.read_reply() == b"helloworld"
            assert await client.read_reply() == "PONG"
            await client.close()
