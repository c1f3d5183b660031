"""The tutorial's Redis page (docs/tutorial/code/redis_protocol.py) against a real redis-server.

On asyncio, uvloop and trio, and once as a script, the way a reader runs it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import anyio
import pytest
from redis_server import RedisServer, running_redis

CODE = Path(__file__).resolve().parent.parent.parent / "docs" / "tutorial" / "code"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_protocol(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(CODE))
    return importlib.import_module("redis_protocol")


@pytest.fixture
def expected(redis: RedisServer) -> list[object]:
    """What main() returns; redis-cli, the reference client, says what the error is."""
    server = redis
    subprocess.run(
        [server.cli_path, "-p", str(server.port), "SET", "reference:string", "x"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    wrongtype = subprocess.run(
        [server.cli_path, "-p", str(server.port), "LPUSH", "reference:string", "y"],
        check=True,
        capture_output=True,
        timeout=30,
        text=True,
    ).stdout.strip()
    assert wrongtype.startswith("WRONGTYPE ")
    return [
        "PONG",
        True,
        10_000,
        wrongtype,
        [b"subscribe", b"tutorial:news", 1],
        [b"message", b"tutorial:news", b"hi!"],
    ]


@pytest.mark.anyio
async def test_main(
    redis: RedisServer, redis_protocol: ModuleType, expected: list[object]
) -> None:
    with anyio.fail_after(60):
        assert await redis_protocol.main(redis.port) == expected


def test_script(redis: RedisServer, expected: list[object]) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "redis_protocol.py", str(redis.port)],
        cwd=CODE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [str(value) for value in expected]
